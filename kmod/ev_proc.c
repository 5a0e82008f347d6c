// SPDX-License-Identifier: GPL-2.0
/*
 * Process life: fork/vfork/clone/clone3 (AUE_FORK, AUE_VFORK; threads are
 * not processes and are not recorded), exit (AUE_EXIT), the setuid family
 * and setgroups, and audit id changes through /proc/self/loginuid
 * (AUE_SETAUID when they start no session).
 *
 * The process table follows the same events: an entry is inherited at
 * sched_process_fork and removed when the last thread exits.
 */
#include <linux/audit.h>
#include <linux/cred.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/uidgid.h>
#include <asm/syscall.h>

#include "hooks.h"

/* ---- table maintenance and exit: tracepoints ---- */

void lxbsm_fork_probe(void *data, struct task_struct *parent, struct task_struct *child)
{
	if (child->flags & PF_KTHREAD)
		return;
	lxbsm_proc_fork(parent, child);
}
NOKPROBE_SYMBOL(lxbsm_fork_probe);

/* The exit(3) value, or 128 + the signal that killed the process. */
static u32 exit_status(struct task_struct *p)
{
	int code = p->exit_code;

	if (p->signal->flags & SIGNAL_GROUP_EXIT)
		code = p->signal->group_exit_code;
	if (code & 0x7f)
		return 128 + (code & 0x7f);
	return (code >> 8) & 0xff;
}

void lxbsm_exit_probe(void *data, struct task_struct *p)
{
	struct lxbsm_session_ev end;
	struct lxbsm_sel sel;
	struct lxbsm_rec *r;
	bool want;

	lxbsm_inflight_forget(p);
	if (p->flags & PF_KTHREAD || atomic_read(&p->signal->live))
		return;		/* a kernel thread, or not the last thread */
	want = lxbsm_interested(LXBSM_EV_EXIT, &sel) && lxbsm_selected(&sel, false);
	/* Two last threads can race here: only the one that removes records. */
	if (!lxbsm_proc_remove(p, &end))
		return;
	/* A logout or a failed login or su ends with this process. */
	if (end.ev != LXBSM_EV_NR)
		lxbsm_session_record(&end);
	if (!want)
		return;
	lxbsm_hook_hit(data);
	r = lxbsm_rec_begin(LXBSM_EV_EXIT);
	if (r) {
		lxbsm_tok_exit(r, exit_status(p), 0);
		lxbsm_rec_finish(r, &sel.proc, 0);
	}
}
NOKPROBE_SYMBOL(lxbsm_exit_probe);

/* ---- fork: kernel_clone(struct kernel_clone_args *args) -> pid ---- */

struct clone_ctx {
	struct lxbsm_sel sel;
};

int lxbsm_clone_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct clone_ctx *ctx = (struct clone_ctx *)ri->data;
	/* flags is the first member of struct kernel_clone_args (6.1, 6.12) */
	u64 flags = *(const u64 *)regs_get_kernel_argument(regs, 0);
	enum lxbsm_event ev = flags & CLONE_VFORK ? LXBSM_EV_VFORK : LXBSM_EV_FORK;

	if (flags & CLONE_THREAD || current->flags & PF_KTHREAD)
		return 1;
	return !lxbsm_interested(ev, &ctx->sel);
}
NOKPROBE_SYMBOL(lxbsm_clone_entry);

int lxbsm_clone_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct clone_ctx *ctx = (struct clone_ctx *)ri->data;
	/* kernel_clone() returns pid_t: the upper half of rax is not part of it */
	long ret = (int)regs_return_value(regs);
	struct lxbsm_rec *r;

	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return 0;
	if (ret >= 0)
		lxbsm_tok_arg32(r, 0, ret, "child PID");
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_clone_ret);

/*
 * ---- setuid family: __sys_set*id(), plain C arguments, shared by the
 * x86-64, ia32 and 16-bit entry points ----
 */
struct setid_desc {
	enum lxbsm_event ev;
	const char *names[3];
};

static const struct setid_desc setid_descs[] = {
	{ LXBSM_EV_SETUID,	{ "uid" } },
	{ LXBSM_EV_SETGID,	{ "gid" } },
	{ LXBSM_EV_SETREUID,	{ "ruid", "euid" } },
	{ LXBSM_EV_SETREGID,	{ "rgid", "egid" } },
	{ LXBSM_EV_SETRESUID,	{ "ruid", "euid", "suid" } },
	{ LXBSM_EV_SETRESGID,	{ "rgid", "egid", "sgid" } },
	{ LXBSM_EV_SETFSUID,	{ "fsuid" } },
	{ LXBSM_EV_SETFSGID,	{ "fsgid" } },
};

struct setid_ctx {
	struct lxbsm_sel sel;
	u32 ids[3];
	bool sets_ruid;
	bool sets_rgid;			/* in an su or sudo tree */
	bool root;			/* the caller was root (before the call) */
};

size_t lxbsm_setid_data_size(void)
{
	return sizeof(struct setid_ctx);
}

int lxbsm_setid_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct setid_ctx *ctx = (struct setid_ctx *)ri->data;
	const struct setid_desc *d = &setid_descs[lxbsm_kret_hook(ri)->arg];
	int i;

	for (i = 0; i < 3; i++)
		ctx->ids[i] = (u32)regs_get_kernel_argument(regs, i);
	/* A call that sets the real uid may be a login: see it return. */
	ctx->sets_ruid = d->ev == LXBSM_EV_SETUID ||
			 ((d->ev == LXBSM_EV_SETREUID || d->ev == LXBSM_EV_SETRESUID) &&
			  ctx->ids[0] != (u32)-1);
	/* Becoming another user sets the real gid first: see it while su runs. */
	ctx->sets_rgid = (d->ev == LXBSM_EV_SETGID ||
			  ((d->ev == LXBSM_EV_SETREGID || d->ev == LXBSM_EV_SETRESGID) &&
			   ctx->ids[0] != (u32)-1)) && lxbsm_proc_idchange_live();
	ctx->root = lxbsm_cred_is_root(current_cred());
	return !lxbsm_interested(d->ev, &ctx->sel) && !ctx->sets_ruid && !ctx->sets_rgid;
}
NOKPROBE_SYMBOL(lxbsm_setid_entry);

int lxbsm_setid_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct setid_ctx *ctx = (struct setid_ctx *)ri->data;
	const struct setid_desc *d = &setid_descs[lxbsm_kret_hook(ri)->arg];
	long ret = regs_return_value(regs);
	struct lxbsm_rec *r;
	int i;

	/* setfsuid/setfsgid return the previous id and never fail. */
	if (d->ev == LXBSM_EV_SETFSUID || d->ev == LXBSM_EV_SETFSGID)
		ret = (u32)ret;
	if (lxbsm_selected(&ctx->sel, ret < 0)) {
		lxbsm_hook_hit(lxbsm_kret_hook(ri));
		r = lxbsm_rec_begin(d->ev);
		if (r) {
			for (i = 0; i < 3 && d->names[i]; i++)
				lxbsm_tok_arg32(r, i + 1, ctx->ids[i], d->names[i]);
			lxbsm_rec_finish(r, &ctx->sel.proc, ret);
		}
	}
	/* After the setuid record: the login comes out of it. */
	if (ctx->sets_ruid && ret == 0) {
		struct lxbsm_session_ev sev;

		lxbsm_proc_setuid(current, lxbsm_chrooted(), ctx->root, &sev);
		if (sev.ev != LXBSM_EV_NR)
			lxbsm_session_record(&sev);
	}
	if (ctx->sets_rgid && ret == 0)
		lxbsm_proc_setgid(current);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_setid_ret);

static_assert(ARRAY_SIZE(setid_descs) == 8);

/* ---- setgroups (x86-64, ia32, ia32 16-bit stubs) ---- */

struct setgroups_ctx {
	struct lxbsm_sel sel;
};

int lxbsm_setgroups_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct setgroups_ctx *ctx = (struct setgroups_ctx *)ri->data;

	return !lxbsm_interested(LXBSM_EV_SETGROUPS, &ctx->sel);
}
NOKPROBE_SYMBOL(lxbsm_setgroups_entry);

/* One arg32 1 "setgroups" per group, read from the new credentials. */
int lxbsm_setgroups_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct setgroups_ctx *ctx = (struct setgroups_ctx *)ri->data;
	long ret = regs_return_value(regs);
	struct lxbsm_rec *r;

	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(LXBSM_EV_SETGROUPS);
	if (!r)
		return 0;
	if (ret == 0) {
		const struct group_info *gi = current_cred()->group_info;
		int i;

		for (i = 0; i < gi->ngroups && i < 16; i++)
			lxbsm_tok_arg32(r, 1, lxbsm_gid(gi->gid[i]), "setgroups");
	}
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_setgroups_ret);

/*
 * ---- audit_set_loginuid(kuid_t): a write to /proc/self/loginuid.  By a
 * login program running as root, pam_loginuid starts a session; anything
 * else is an AUE_SETAUID ----
 */

struct loginuid_ctx {
	u32 auid;
};

static_assert(sizeof(struct loginuid_ctx) <= sizeof(struct setid_ctx));

int lxbsm_loginuid_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct loginuid_ctx *ctx = (struct loginuid_ctx *)ri->data;
	kuid_t uid = KUIDT_INIT((uid_t)regs_get_kernel_argument(regs, 0));

	ctx->auid = lxbsm_uid(uid);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_loginuid_entry);

/*
 * arg32 1 "old auid" (lxbsm's), arg32 2 "setauid" (the value written, as
 * FreeBSD's setauid record has it), text: what lxbsm made of it.  The
 * subject is the writer before the write; with no terminal of its own, its
 * controlling tty.  A write lxbsm refuses is recorded whatever
 * pre-selection says: it is a process trying to pose as another user.
 */
static void setauid_record(u32 auid, const struct lxbsm_setauid *sa, const struct lxbsm_tid *tty)
{
	static const u8 zero[sizeof(sa->proc.tid.addr)];
	struct lxbsm_proc_snap subj = sa->proc;
	const char *text;
	struct lxbsm_rec *r;

	switch (sa->how) {
	case LXBSM_SETAUID_SET:
		text = "setauid: audit id set";
		break;
	case LXBSM_SETAUID_KEPT:
		text = "setauid: not taken: the audit id is set once";
		break;
	default:
		text = "setauid: not taken: writer is not root and lacks CAP_AUDIT_CONTROL";
		break;
	}
	if (sa->how != LXBSM_SETAUID_REFUSED &&
	    !lxbsm_selected_for(LXBSM_EV_SETAUID, &subj, false))
		return;
	if (!subj.tid.port && !memcmp(subj.tid.addr, zero, sizeof(zero)))
		subj.tid = *tty;
	r = lxbsm_rec_begin(LXBSM_EV_SETAUID);
	if (!r)
		return;
	lxbsm_tok_arg32(r, 1, sa->old_auid, "old auid");
	lxbsm_tok_arg32(r, 2, auid, "setauid");
	lxbsm_tok_text(r, text);
	lxbsm_rec_finish(r, &subj, 0);
}

int lxbsm_loginuid_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct loginuid_ctx *ctx = (struct loginuid_ctx *)ri->data;
	struct lxbsm_session_ev sev;
	struct lxbsm_setauid sa;
	struct lxbsm_tid tty;
	bool may;

	if ((int)regs_return_value(regs) != 0)
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	lxbsm_tty_tid(&tty);
	may = lxbsm_cred_audit_ctl(current_cred());
	lxbsm_proc_set_login(current, ctx->auid, audit_get_sessionid(current), may, &tty,
			     &sev, &sa);
	if (sev.ev != LXBSM_EV_NR)
		lxbsm_session_record(&sev);
	else if (sa.how != LXBSM_SETAUID_NONE)
		setauid_record(ctx->auid, &sa, &tty);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_loginuid_ret);
