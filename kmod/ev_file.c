// SPDX-License-Identifier: GPL-2.0
/*
 * open, openat, openat2, creat (every ABI, through do_sys_openat2), io_uring
 * opens (through do_filp_open, do_file_open from 7.x, in io_uring context
 * only), and close; the file a chmod, fchmod or fchmodat resolved (those
 * are table-driven events: events.h, ev_sys.c).
 *
 * The event follows the flags as on FreeBSD: AUE_OPEN_R .. AUE_OPEN_RWTC for
 * open(2), AUE_OPENAT_* for openat(2) and openat2(2), AUE_CREAT for creat(2),
 * AUE_OPEN / AUE_OPENAT for O_PATH.  Tokens (FreeBSD order): [arg32 3
 * "mode" when creating], arg32 2 "flags", [arg32 1 "at fd 1" for openat],
 * path, attr32.  A successful open records the opened file's own path; a
 * failed one the name the caller gave, made absolute.
 *
 * A successful open is recorded as its file is installed (the fd_install
 * kprobe finds the open in flight in its thread: lxbsm_inflight), with the
 * file the call itself opened: never through the descriptor, which a
 * sibling thread may already have made name another file (dup2).
 */
#include <linux/fcntl.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/namei.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "arch.h"
#include "compat.h"
#include "hooks.h"

enum open_kind { OPEN_PLAIN, OPEN_AT, OPEN_CREAT };

struct open_ctx {
	struct lxbsm_sel sel;
	int dfd;
	const char __user *name;
	u64 flags;
	u64 mode;
	enum open_kind kind;
	bool recorded;			/* at fd_install */
};

size_t lxbsm_open_data_size(void)
{
	return sizeof(struct open_ctx);
}

static enum open_kind open_kind_of_syscall(void)
{
	long nr = syscall_get_nr(current, task_pt_regs(current));

	if (in_compat_syscall()) {
		if (nr == LXBSM_NR_COMPAT_OPEN)
			return OPEN_PLAIN;
		if (nr == LXBSM_NR_COMPAT_CREAT)
			return OPEN_CREAT;
		return OPEN_AT;
	}
	nr &= ~(long)__X32_SYSCALL_BIT;
	if (nr == __NR_open)
		return OPEN_PLAIN;
	if (nr == __NR_creat)
		return OPEN_CREAT;
	return OPEN_AT;
}

static enum lxbsm_event open_event(enum open_kind kind, u64 flags)
{
	enum lxbsm_event base = kind == OPEN_AT ? LXBSM_EV_OPENAT_R : LXBSM_EV_OPEN_R;
	int off;

	if (kind == OPEN_CREAT)
		return LXBSM_EV_CREAT;
	if (flags & O_PATH)
		return kind == OPEN_AT ? LXBSM_EV_OPENAT : LXBSM_EV_OPEN;
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		off = 0;
		break;
	case O_WRONLY:
		off = 4;
		break;
	default:
		off = 8;
		break;
	}
	if (flags & O_CREAT)
		off += 1;
	if (flags & O_TRUNC)
		off += 2;
	return base + off;
}

static bool creating(u64 flags)
{
	return flags & O_CREAT || (flags & O_TMPFILE) == O_TMPFILE;
}

static void put_file(struct lxbsm_rec *r, struct file *f)
{
	struct lxbsm_attr attr;

	lxbsm_tok_file_path(r, f);
	lxbsm_attr_of(file_inode(f), &attr);
	lxbsm_tok_attr32(r, &attr);
}

/* do_sys_openat2(int dfd, const char __user *name, struct open_how *how) */
int lxbsm_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct open_ctx *ctx = (struct open_ctx *)ri->data;
	const struct open_how *how = (const struct open_how *)regs_get_kernel_argument(regs, 2);

	if (current->flags & PF_KTHREAD)
		return 1;
	ctx->kind = open_kind_of_syscall();
	ctx->flags = how->flags;
	ctx->mode = how->mode;
	if (!lxbsm_interested(open_event(ctx->kind, ctx->flags), &ctx->sel))
		return 1;
	ctx->dfd = (int)regs_get_kernel_argument(regs, 0);
	ctx->name = (const char __user *)regs_get_kernel_argument(regs, 1);
	ctx->recorded = false;
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_open_entry);

/* The record of an open: @f the file it installed at @ret, or NULL if it failed. */
static void open_record(struct open_ctx *ctx, long ret, struct file *f)
{
	struct lxbsm_rec *r;

	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return;
	if (creating(ctx->flags))
		lxbsm_tok_arg32(r, 3, ctx->mode, "mode");
	lxbsm_tok_arg32(r, 2, ctx->flags, "flags");
	if (ctx->kind == OPEN_AT)
		lxbsm_tok_arg32(r, 1, ctx->dfd, "at fd 1");
	if (f)
		put_file(r, f);
	else
		lxbsm_tok_path(r, lxbsm_user_path(r, ctx->dfd, ctx->name));
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
}

/*
 * A success was recorded at fd_install.  One that was not had its
 * fd_install missed (a probe inside a probe), which the kprobe counts and
 * the trail shows as a loss.
 */
int lxbsm_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct open_ctx *ctx = (struct open_ctx *)ri->data;
	/*
	 * do_sys_openat2() returns an int from 7.x on (a long before): rax's
	 * upper half is then not part of it, and -EACCES would read as a
	 * large fd.  An fd or an errno fits in an int on every kernel.
	 */
	long ret = (int)regs_return_value(regs);

	if (ret >= 0 || ctx->recorded || !lxbsm_selected(&ctx->sel, true))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	open_record(ctx, ret, NULL);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_open_ret);

/*
 * fd_install(unsigned int fd, struct file *file): the file an open syscall
 * in flight in this thread installs (its record), or a socket an accept
 * installs (ev_net.c).  This is on the path of every open, socket, pipe
 * and accept: nothing else is looked at.
 */
int lxbsm_fd_install_pre(struct kprobe *p, struct pt_regs *regs)
{
	unsigned int fd = (unsigned int)regs_get_kernel_argument(regs, 0);
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 1);
	struct socket *sock;

	if (current->flags & PF_KTHREAD)
		return 0;
	if (lxbsm_inflight_any()) {
		struct open_ctx *ctx = lxbsm_inflight(lxbsm_open_entry);

		if (ctx && !ctx->recorded) {
			ctx->recorded = true;
			if (lxbsm_selected(&ctx->sel, false)) {
				lxbsm_hook_hit(lxbsm_kprobe_hook(p));
				open_record(ctx, fd, f);
			}
			return 0;
		}
	}
	sock = lxbsm_sock_from_file(f);
	if (sock)
		lxbsm_sock_installed(lxbsm_kprobe_hook(p), fd, sock);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_fd_install_pre);

/*
 * io_uring opens: do_filp_open(int dfd, struct filename *name,
 * const struct open_flags *op) called from an io_uring worker or inline
 * from io_uring_enter(2).  Everything else reaching do_filp_open is either
 * an open syscall (recorded above), an exec or an open by the kernel.
 */
struct filp_ctx {
	struct lxbsm_sel sel;
	int dfd;
	struct filename *name;
	int flags;
};

size_t lxbsm_filp_open_data_size(void)
{
	return sizeof(struct filp_ctx);
}

bool lxbsm_in_io_uring(void)
{
	long nr;

	if (current->flags & PF_IO_WORKER)
		return true;
	if (current->flags & PF_KTHREAD)
		return false;
	nr = syscall_get_nr(current, task_pt_regs(current));
	if (!in_compat_syscall())
		nr &= ~(long)__X32_SYSCALL_BIT;
	return nr == __NR_io_uring_enter;	/* 426 in both ABIs */
}

int lxbsm_filp_open_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct filp_ctx *ctx = (struct filp_ctx *)ri->data;

	if (!lxbsm_in_io_uring())
		return 1;
	ctx->flags = lxbsm_open_flags(regs_get_kernel_argument(regs, 2));
	if (!lxbsm_interested(open_event(OPEN_AT, ctx->flags), &ctx->sel))
		return 1;
	ctx->dfd = (int)regs_get_kernel_argument(regs, 0);
	ctx->name = (struct filename *)regs_get_kernel_argument(regs, 1);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_filp_open_entry);

int lxbsm_filp_open_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct filp_ctx *ctx = (struct filp_ctx *)ri->data;
	struct file *f = (struct file *)regs_return_value(regs);
	long ret = IS_ERR(f) ? PTR_ERR(f) : 0;
	struct lxbsm_rec *r;

	/* An inline attempt that io_uring retries in a worker is not an event. */
	if (ret == -EAGAIN || !lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return 0;
	if (creating(ctx->flags))
		lxbsm_tok_arg32(r, 3, 0, "mode");
	lxbsm_tok_arg32(r, 2, ctx->flags, "flags");
	lxbsm_tok_arg32(r, 1, ctx->dfd, "at fd 1");
	if (ret == 0)
		put_file(r, f);		/* the caller holds it until installed */
	else
		lxbsm_tok_path(r, lxbsm_abs_path(r, ctx->dfd, ctx->name->name));
	lxbsm_tok_text(r, "io_uring");
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_filp_open_ret);

/*
 * close(2): AUE_CLOSE with arg32 1 "fd", path, attr32.  The file is looked
 * at on the way in, while the descriptor still names it.
 */
struct close_ctx {
	struct lxbsm_sel sel;
	int fd;
	bool have_file;
	struct lxbsm_attr attr;
	char path[];
};

#define CLOSE_DATA_SIZE	KRETPROBE_MAX_DATA_SIZE

size_t lxbsm_close_data_size(void)
{
	return CLOSE_DATA_SIZE;
}

int lxbsm_close_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct close_ctx *ctx = (struct close_ctx *)ri->data;
	unsigned long args[6];
	struct file *f;

	if (current->flags & PF_KTHREAD)
		return 1;
	if (!lxbsm_interested(LXBSM_EV_CLOSE, &ctx->sel))
		return 1;
	syscall_get_arguments(current, task_pt_regs(current), args);
	ctx->fd = (int)args[0];
	ctx->have_file = false;
	f = fget_raw(ctx->fd);
	if (f) {
		size_t room = CLOSE_DATA_SIZE - sizeof(*ctx);
		char *s = lxbsm_d_path(&f->f_path, ctx->path, room);

		if (IS_ERR(s))
			ctx->path[0] = '\0';
		else
			memmove(ctx->path, s, strlen(s) + 1);
		lxbsm_attr_of(file_inode(f), &ctx->attr);
		ctx->have_file = true;
		fput(f);
	}
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_close_entry);

int lxbsm_close_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct close_ctx *ctx = (struct close_ctx *)ri->data;
	long ret = regs_return_value(regs);
	struct lxbsm_rec *r;

	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(LXBSM_EV_CLOSE);
	if (!r)
		return 0;
	lxbsm_tok_arg32(r, 1, ctx->fd, "fd");
	if (ctx->have_file) {
		lxbsm_tok_path(r, ctx->path);
		lxbsm_tok_attr32(r, &ctx->attr);
	}
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_close_ret);

/* security_path_chmod(const struct path *, umode_t): the file a chmod resolved */
int lxbsm_chmod_capture(struct kprobe *p, struct pt_regs *regs)
{
	lxbsm_sys_capture(lxbsm_kprobe_hook(p),
			  (const struct path *)regs_get_kernel_argument(regs, 0));
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_chmod_capture);
