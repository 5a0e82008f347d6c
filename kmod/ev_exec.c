// SPDX-License-Identifier: GPL-2.0
/*
 * execve, execveat, fexecve: AUE_EXECVE, AUE_EXECVEAT, AUE_FEXECVE.
 *
 * The syscall stubs (x86-64, ia32, x32) are kretprobed: the entry handler
 * decides pre-selection and registers the call as "in flight" for the task;
 * security_bprm_check, which the kernel calls for the file it is about to
 * run (and again for a script's interpreter), records the resolved path and
 * attributes of that file into the in-flight call; the return handler
 * builds the record: [arg32 fd], exec_args, [exec_env], path, [path of the
 * interpreter], attr32, subject, return.  On success the arguments are read
 * from the new image (what really ran); on failure from the caller's argv.
 * Paths are the kernel's own, never the string the caller typed, except
 * when the kernel never found a file (e.g. ENOENT): then the caller's name,
 * made absolute against its working directory.
 */
#include <linux/binfmts.h>
#include <linux/dcache.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/hash.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/sched/mm.h>
#include <linux/spinlock.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "hooks.h"
#include "pool.h"
#include "xctl.h"

/*
 * The kernel allocates each hook's kretprobe instances (a thousand for the
 * calls that sleep) at load, so an instance's data is kept small: an exec
 * keeps its path there when it fits in EXEC_PATH_SIZE bytes, as almost all
 * do.  A longer one (up to PATH_MAX) lives in a buffer of its own, from a
 * pool (pool.h) that is refilled as it is used.  The buffers are on a list,
 * so that an unload, after which no return handler runs to give them back,
 * gives back what is left.  Only when the pool is empty, more long paths in
 * flight at once than it was refilled for, does an exec's record get the
 * end of its path after "...".
 */
struct long_path {
	struct list_head node;
	char path[PATH_MAX];
};

#define LONG_PATH_POOL	32
LXBSM_POOL_DEFINE(lxbsm_long_path_pool, "exec long path", sizeof(struct long_path),
		  LONG_PATH_POOL);

struct exec_ctx {
	struct hlist_node node;
	struct task_struct *task;
	struct lxbsm_sel sel;
	unsigned long args[6];
	u8 kind;			/* enum lxbsm_exec_kind */
	bool compat;
	bool fexecve;			/* execveat(fd, "", ..., AT_EMPTY_PATH) */
	u8 files;			/* security_bprm_check calls seen */
	bool have_attr;
	bool xc_hit;			/* an exec control deny rule matched */
	u32 xc_mode;
	char xc_text[sizeof_field(struct lxbsm_xc_verdict, text)];
	struct lxbsm_attr attr;
	struct long_path *long_path;	/* the path, when it does not fit below */
	char path[];			/* the file named, as the kernel resolved it */
};

#define EXEC_PATH_SIZE	256
#define EXEC_DATA_SIZE	(sizeof(struct exec_ctx) + EXEC_PATH_SIZE)
#define INFLIGHT_BITS	6

/* The in-flight execs (their nodes and tasks), and the long paths they hold. */
static struct hlist_head inflight[1 << INFLIGHT_BITS];
static DEFINE_RAW_SPINLOCK(inflight_lock);
static LXBSM_HELD_DEFINE(long_paths, lxbsm_long_path_pool, struct long_path, node);

size_t lxbsm_exec_data_size(void)
{
	return EXEC_DATA_SIZE;
}

int lxbsm_exec_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct exec_ctx *ctx = (struct exec_ctx *)ri->data;
	unsigned long flags;
	int i;

	ctx->kind = lxbsm_kret_hook(ri)->arg;
	/* kernel_execve() is the exec of a usermode helper (lxbsm_kthread()) */
	if (current->flags & PF_KTHREAD && ctx->kind != LXBSM_EXEC_KERNEL)
		return 1;
	if (!lxbsm_interested(LXBSM_EV_EXECVE, &ctx->sel)) {
		/* Not pre-selected, but an exec control match is audited. */
		if (!lxbsm_xc_active())
			return 1;
		if (!ctx->sel.classes)
			lxbsm_proc_snapshot(current, &ctx->sel.proc);
	}
	if (ctx->kind == LXBSM_EXEC_KERNEL) {
		/* kernel_execve(filename, argv, envp): kernel pointers */
		for (i = 0; i < 3; i++)
			ctx->args[i] = regs_get_kernel_argument(regs, i);
		ctx->compat = false;
	} else {
		syscall_get_arguments(current, task_pt_regs(current), ctx->args);
		ctx->compat = in_compat_syscall();
	}
	ctx->fexecve = false;
	ctx->task = current;
	ctx->files = 0;
	ctx->have_attr = false;
	ctx->xc_hit = false;
	ctx->long_path = NULL;
	ctx->path[0] = '\0';
	raw_spin_lock_irqsave(&inflight_lock, flags);
	hlist_add_head(&ctx->node, &inflight[hash_ptr(current, INFLIGHT_BITS)]);
	raw_spin_unlock_irqrestore(&inflight_lock, flags);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_exec_entry);

/*
 * security_bprm_check(struct linux_binprm *bprm): the file about to run,
 * called once for the program and again for a script's interpreter, before
 * the point of no return.  The entry handler records the first file into the
 * in-flight exec and asks exec control; a denial in enforce mode makes the
 * return handler turn a 0 (every LSM agreed) into -EACCES.
 */
struct bprm_ctx {
	bool deny;
	struct lxbsm_xc_verdict v;
};

#define BPRM_DATA_SIZE	sizeof(struct bprm_ctx)

size_t lxbsm_bprm_check_data_size(void)
{
	return BPRM_DATA_SIZE;
}

/*
 * Current's in-flight exec, if any.  Only current adds and removes its own
 * exec, and only current writes its fields, so it may use the exec after the
 * lock is dropped: the lock keeps the hash chains whole for the others.
 */
static struct exec_ctx *inflight_find(void)
{
	struct exec_ctx *ctx, *found = NULL;
	unsigned long flags;

	raw_spin_lock_irqsave(&inflight_lock, flags);
	hlist_for_each_entry(ctx, &inflight[hash_ptr(current, INFLIGHT_BITS)], node) {
		if (ctx->task == current) {
			found = ctx;
			break;
		}
	}
	raw_spin_unlock_irqrestore(&inflight_lock, flags);
	return found;
}

/*
 * @file's path for the exec record: in the exec's own data when it fits,
 * else in a buffer of its own.  @path is the path if already made (in
 * @buf, of LXBSM_PATH_MAX bytes), else NULL; @buf may be NULL (none to
 * be had).  No lock held: d_path() takes seqlocks (lxbsm_d_path() takes
 * none on PREEMPT_RT, see dpath.c).
 * Without memory for a long path, the record gets its end after "...".
 */
static void exec_path(struct exec_ctx *ctx, const struct file *file, const char *path,
		      char *buf)
{
	struct long_path *lp;
	size_t n;

	if (!path)
		path = buf ? lxbsm_d_path(&file->f_path, buf, LXBSM_PATH_MAX) : ERR_PTR(-ENOMEM);
	if (!IS_ERR(path)) {
		n = strlen(path);
		if (n < EXEC_PATH_SIZE) {
			strscpy(ctx->path, path, EXEC_PATH_SIZE);
			return;
		}
	}
	lp = lxbsm_pool_get(&lxbsm_long_path_pool);
	if (!lp) {
		if (IS_ERR(path))
			strscpy(ctx->path, "...", EXEC_PATH_SIZE);
		else
			snprintf(ctx->path, EXEC_PATH_SIZE, "...%s", path + n - (EXEC_PATH_SIZE - 4));
		return;
	}
	if (IS_ERR(path))
		path = lxbsm_d_path(&file->f_path, lp->path, sizeof(lp->path));
	if (IS_ERR(path))
		lp->path[0] = '\0';
	else	/* from a buffer of PATH_MAX bytes (or within lp->path) */
		memmove(lp->path, path, strlen(path) + 1);
	lxbsm_held_add(&long_paths, &lp->node);
	ctx->long_path = lp;
}

/* The first file of an exec: its path and attributes, for the record. */
static void exec_first_file(struct exec_ctx *ctx, struct linux_binprm *bprm, struct bprm_ctx *bc,
			    char *buf)
{
	/*
	 * fexecve(3) is execveat(fd, "", ..., AT_EMPTY_PATH), which the kernel
	 * names "/dev/fd/<fd>".  The caller's own "" may not even be mapped yet
	 * (fork does not copy file-backed page tables), so ask the kernel.
	 */
	if (ctx->kind == LXBSM_EXEC_EXECVEAT && (ctx->args[4] & AT_EMPTY_PATH)) {
		char want[24];

		snprintf(want, sizeof(want), "/dev/fd/%d", (int)ctx->args[0]);
		ctx->fexecve = !strcmp(bprm->filename, want);
	}
	exec_path(ctx, bprm->file, bc->v.path, buf);
	lxbsm_attr_of(file_inode(bprm->file), &ctx->attr);
	ctx->have_attr = true;
}

/* A deny rule matched a file of the exec: the record says which. */
static void exec_denied(struct exec_ctx *ctx, const struct lxbsm_xc_verdict *v)
{
	/* The exec record is written whatever pre-selection says. */
	ctx->xc_hit = true;
	ctx->xc_mode = v->mode;
	strscpy(ctx->xc_text, v->text, sizeof(ctx->xc_text));
}

int lxbsm_bprm_check_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct linux_binprm *bprm = (struct linux_binprm *)regs_get_kernel_argument(regs, 0);
	struct bprm_ctx *bc = (struct bprm_ctx *)ri->data;
	struct exec_ctx *ctx;
	char *buf;
	bool deny;

	if (!bprm->file)
		return 1;
	buf = lxbsm_hook_pathbuf_get();
	deny = lxbsm_xc_check(bprm->file, buf, LXBSM_PATH_MAX, &bc->v);
	if (bc->v.need_hash)
		lxbsm_xc_hash_later(bprm->file, true);
	ctx = inflight_find();
	if (ctx) {
		if (ctx->files++ == 0)
			exec_first_file(ctx, bprm, bc, buf);
		if (deny)
			exec_denied(ctx, &bc->v);
	}
	if (buf)
		lxbsm_hook_pathbuf_put(buf);
	bc->v.path = NULL;		/* it was in buf */
	bc->deny = deny && bc->v.mode == LXBSM_XC_ENFORCE;
	return !bc->deny;
}
NOKPROBE_SYMBOL(lxbsm_bprm_check_entry);

int lxbsm_bprm_check_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct bprm_ctx *bc = (struct bprm_ctx *)ri->data;

	/* Another LSM's refusal stands as it is. */
	if (bc->deny && (int)regs_return_value(regs) == 0)	/* an int function */
		regs_set_return_value(regs, -EACCES);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_bprm_check_ret);

/* uselib(2) is a 32-bit system call only (x86-64 has no entry for it). */
static bool in_uselib(void)
{
	if (current->flags & PF_KTHREAD || !in_compat_syscall())
		return false;
	/* An x32 call's number has __X32_SYSCALL_BIT set: never this one. */
	return syscall_get_nr(current, task_pt_regs(current)) == __NR_ia32_uselib;
}

/*
 * security_file_open(struct file *file) for every file the kernel opens for
 * execution (open flags with __FMODE_EXEC, which open(2) cannot ask for, and
 * uselib(2)'s, which has it only before 6.8):
 * the program (left to security_bprm_check when its exec is in flight), an
 * ELF program's PT_INTERP, a script's or binfmt_misc's interpreter, and
 * uselib(2)'s library.  An ELF interpreter never reaches
 * security_bprm_check and its executable mappings are the kernel's own
 * (in_execve); uselib maps before any check would see it.  So exec control
 * judges them here, when the file is open but before the caller has it: a
 * denied file makes the open fail with EACCES, which fails the exec (before
 * its point of no return) or uselib.
 *
 * Here and not at open_exec()'s return: a kretprobe instance is held for the
 * whole call, and open_exec() walks a path that a user can make block as
 * long as it likes (a FUSE file system in a user namespace), so enough such
 * calls would leave none for the check.  security_file_open() itself does
 * not wait for the user.  Every other open leaves at the first test.
 */
struct exec_open_ctx {
	bool deny;
	struct exec_ctx *exec;		/* current's exec in flight, if any */
	struct file *file;		/* the opener holds it until after the return */
	struct lxbsm_attr attr;
	struct lxbsm_xc_verdict v;
};

#define EXEC_OPEN_DATA_SIZE	sizeof(struct exec_open_ctx)

size_t lxbsm_exec_open_data_size(void)
{
	return EXEC_OPEN_DATA_SIZE;
}

int lxbsm_exec_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)regs_get_kernel_argument(regs, 0);
	struct exec_open_ctx *oc = (struct exec_open_ctx *)ri->data;
	char *buf;
	bool deny;

	/* uselib opens without __FMODE_EXEC from 6.8 on ("uselib: remove use of __FMODE_EXEC"). */
	if (!(file->f_flags & __FMODE_EXEC) && !in_uselib())
		return 1;
	if (!lxbsm_xc_active())
		return 1;
	oc->exec = inflight_find();
	/* The program of an exec we follow: security_bprm_check judges it. */
	if (oc->exec && !oc->exec->files)
		return 1;
	buf = lxbsm_hook_pathbuf_get();
	deny = lxbsm_xc_check(file, buf, LXBSM_PATH_MAX, &oc->v);
	if (buf)
		lxbsm_hook_pathbuf_put(buf);
	oc->v.path = NULL;		/* it was in buf */
	if (!deny) {
		if (oc->v.need_hash)
			lxbsm_xc_hash_later(file, !!oc->exec);
		return 1;
	}
	oc->deny = oc->v.mode == LXBSM_XC_ENFORCE;
	/* The record's path is made at the return, in the record's buffer. */
	oc->file = file;
	lxbsm_attr_of(file_inode(file), &oc->attr);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_exec_open_entry);

int lxbsm_exec_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct exec_open_ctx *oc = (struct exec_open_ctx *)ri->data;
	long ret = (int)regs_return_value(regs);	/* an int function */
	struct lxbsm_proc_snap snap;
	struct lxbsm_rec *r;

	if (oc->deny && ret == 0) {
		ret = -EACCES;
		regs_set_return_value(regs, ret);
	}
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	if (oc->exec) {
		/* The exec's record names the rule (and kill mode kills there). */
		exec_denied(oc->exec, &oc->v);
		return 0;
	}
	/* uselib, or an exec whose own hook missed it: a record of its own. */
	lxbsm_proc_snapshot(current, &snap);
	r = lxbsm_rec_begin(in_uselib() ? LXBSM_EV_MMAP : LXBSM_EV_EXECVE);
	if (r) {
		lxbsm_tok_file_path(r, oc->file);
		lxbsm_tok_attr32(r, &oc->attr);
		lxbsm_tok_text(r, oc->v.text);
		lxbsm_rec_finish(r, &snap, ret);
	}
	if (oc->v.mode == LXBSM_XC_KILL)
		lxbsm_xc_kill_current();
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_exec_open_ret);
/* The interpreter a script started: the new image's own file. */
static void interpreter_path(struct lxbsm_rec *r)
{
	struct mm_struct *mm = current->mm;
	struct file *exe;

	if (!mm)
		return;
	/* Only this thread is left after exec, so exe_file cannot change. */
	rcu_read_lock();
	exe = rcu_dereference(mm->exe_file);
	if (exe)
		lxbsm_tok_file_path(r, exe);
	rcu_read_unlock();
}

int lxbsm_exec_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct exec_ctx *ctx = (struct exec_ctx *)ri->data;
	/* an int (kernel_execve) or an int's value (the syscalls) */
	long ret = (int)regs_return_value(regs);
	const unsigned long *a = ctx->args;
	enum lxbsm_event ev = LXBSM_EV_EXECVE;
	const char __user *name = NULL;
	const void __user *argv = NULL, *envp = NULL;
	struct mm_struct *mm = current->mm;
	struct long_path *lp = ctx->long_path;
	struct lxbsm_rec *r;
	unsigned long flags;
	u32 policy;
	int dfd = AT_FDCWD;

	/* kernel_execve() returns an int: only the low half of the register. */
	if (ctx->kind == LXBSM_EXEC_KERNEL)
		ret = (int)ret;
	raw_spin_lock_irqsave(&inflight_lock, flags);
	hlist_del(&ctx->node);
	raw_spin_unlock_irqrestore(&inflight_lock, flags);
	if (lp)
		lxbsm_held_del(&long_paths, &lp->node);

	if (!ctx->xc_hit && !lxbsm_selected(&ctx->sel, ret < 0))
		goto out;
	if (ctx->kind == LXBSM_EXEC_EXECVEAT) {
		dfd = (int)a[0];
		name = (const char __user *)a[1];
		argv = (const void __user *)a[2];
		envp = (const void __user *)a[3];
		ev = LXBSM_EV_EXECVEAT;
		if (ctx->fexecve) {
			ev = LXBSM_EV_FEXECVE;
		} else if (!ctx->files && (a[4] & AT_EMPTY_PATH)) {
			/* Failed before a file was found: the old image is intact. */
			char first = 1;

			if (!lxbsm_strncpy_user_nofault(&first, name, 1))
				ev = LXBSM_EV_FEXECVE;
		}
	} else if (ctx->kind == LXBSM_EXEC_EXECVE) {
		name = (const char __user *)a[0];
		argv = (const void __user *)a[1];
		envp = (const void __user *)a[2];
	}
	/* kernel_execve: kernel strings; the arguments are read on success only. */

	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(ev);
	if (!r)
		goto kill;
	if (ev == LXBSM_EV_FEXECVE)
		lxbsm_tok_arg32(r, 1, dfd, "fd");
	policy = lxbsm_policy();
	if (policy & LXBSM_POLICY_ARGV) {
		if (ret == 0 && mm)
			lxbsm_tok_strings_user(r, AUT_EXEC_ARGS, (const char __user *)mm->arg_start,
					       mm->arg_end - mm->arg_start, LXBSM_ARGV_MAX);
		else
			lxbsm_tok_strings_argv(r, AUT_EXEC_ARGS, argv, ctx->compat,
					       LXBSM_ARGV_MAX);
	}
	if (policy & LXBSM_POLICY_ARGE) {
		if (ret == 0 && mm)
			lxbsm_tok_strings_user(r, AUT_EXEC_ENV, (const char __user *)mm->env_start,
					       mm->env_end - mm->env_start, LXBSM_ENV_MAX);
		else
			lxbsm_tok_strings_argv(r, AUT_EXEC_ENV, envp, ctx->compat, LXBSM_ENV_MAX);
	}
	if (ctx->files)
		lxbsm_tok_path(r, lp ? lp->path : ctx->path);
	else if (ctx->kind == LXBSM_EXEC_KERNEL)
		lxbsm_tok_path(r, lxbsm_abs_path(r, AT_FDCWD, (const char *)a[0]));
	else
		lxbsm_tok_path(r, lxbsm_user_path(r, dfd, name));
	if (ret == 0 && ctx->files > 1)
		interpreter_path(r);
	if (ctx->have_attr)
		lxbsm_tok_attr32(r, &ctx->attr);
	if (ctx->xc_hit)
		lxbsm_tok_text(r, ctx->xc_text);
	/* No process of user space asked for it: the parent is the kernel. */
	if (ctx->kind == LXBSM_EXEC_KERNEL)
		lxbsm_tok_text(r, "usermode helper: started by the kernel (kernel_execve)");
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
kill:
	/* Kill mode: the program started; it ends before its first instruction. */
	if (ctx->xc_hit && ctx->xc_mode == LXBSM_XC_KILL && ret == 0)
		lxbsm_xc_kill_current();
out:
	lxbsm_pool_put(&lxbsm_long_path_pool, lp);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_exec_ret);

/* At unload, once no return handler runs: the long paths nobody freed. */
void lxbsm_exec_exit(void)
{
	lxbsm_held_release(&long_paths);
}
