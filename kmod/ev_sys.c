// SPDX-License-Identifier: GPL-2.0
/*
 * The table-driven events (events.h, LXBSM_TABLE_EVENTS): one pair of
 * handlers for every system call the table lists, and the one path that
 * decides and writes their records, token by token from the event's recipe.
 *
 * Entry: a kernel thread or an event nobody selected leaves at once (the
 * instance goes back); else the call's arguments, from the registers the
 * call was made with (syscall_get_arguments(): the same for every entry
 * point and ABI), are kept.  A capture kprobe inside the call finds the call
 * in flight (lxbsm_inflight()) and keeps what the kernel resolved: the
 * file's path and attributes, in an object of the capture pool (a path is
 * too big for thousands of kretprobe instances).  Return: selected for its
 * outcome?  Then header, the recipe's tokens, subject, return, trailer.
 *
 * Nothing the caller's memory holds is read after the call but a name that
 * resolved to no file (a failed call), as the caller gave it: the path of
 * a file a call worked on is always the kernel's.  A capture the pool could
 * not hold is counted lost (LXBSM_LOST_NO_SCRATCH) and the record says so
 * in a text token, with the caller's name in the path token.
 */
#include <linux/fcntl.h>
#include <linux/list.h>
#include <linux/path.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <asm/syscall.h>

#include "hooks.h"
#include "pool.h"

/* What a recipe's token is made of (events.h). */
enum tokop_kind {
	TOK_END,
	TOK_ARG32,
	TOK_FD_VNODE,
	TOK_UPATH_VNODE,
};

struct tokop {
	u8 kind;
	u8 n;				/* the arg32's argument number */
	s8 a;				/* argument index: the value, the fd, the dir fd */
	s8 b;				/* argument index: the name */
	const char *text;
};

#define T_ARG32(n, text, i)	{ TOK_ARG32, n, i, -1, text }
#define T_FD_VNODE(n, i)	{ TOK_FD_VNODE, n, i, -1, NULL }
#define T_UPATH_VNODE(d, i)	{ TOK_UPATH_VNODE, 0, d, i, NULL }
#define RECIPE_UNPAREN(...)	__VA_ARGS__

#define RECIPE_DEFINE(P, name, aue, classes, recipe)			\
	static const struct tokop recipe_##name[] = { RECIPE_UNPAREN recipe, { TOK_END } };
LXBSM_TABLE_EVENTS(RECIPE_DEFINE, 0)
#undef RECIPE_DEFINE

static const struct tokop *const recipes[LXBSM_EV_NR] = {
#define RECIPE_ENTRY(P, name, aue, classes, recipe) [LXBSM_EV_##name] = recipe_##name,
	LXBSM_TABLE_EVENTS(RECIPE_ENTRY, 0)
#undef RECIPE_ENTRY
};

/* What a capture kprobe keeps of the file the call resolved. */
struct sys_capture {
	struct list_head node;		/* on captures while a call holds it */
	struct lxbsm_attr attr;
	char path[LXBSM_PATH_MAX];
};

#define CAPTURE_POOL	64
LXBSM_POOL_DEFINE(lxbsm_capture_pool, "captured file", sizeof(struct sys_capture),
		  CAPTURE_POOL);

/* Held captures, for unload: a call in flight then never returns to us. */
static LXBSM_HELD_DEFINE(captures, lxbsm_capture_pool, struct sys_capture, node);

struct sys_ctx {
	struct lxbsm_sel sel;
	unsigned long args[6];
	struct sys_capture *cap;
	bool cap_lost;			/* resolved a file, but no object to keep it */
};

size_t lxbsm_sys_data_size(void)
{
	return sizeof(struct sys_ctx);
}

int lxbsm_sys_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sys_ctx *ctx = (struct sys_ctx *)ri->data;

	if (current->flags & PF_KTHREAD)
		return 1;
	if (!lxbsm_interested(lxbsm_kret_hook(ri)->arg, &ctx->sel))
		return 1;
	syscall_get_arguments(current, task_pt_regs(current), ctx->args);
	ctx->cap = NULL;
	ctx->cap_lost = false;
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sys_entry);

/*
 * From a capture kprobe (@h) inside a table-driven call: @path is the file
 * the call resolved.  The first capture of a call is the one kept.
 */
void lxbsm_sys_capture(struct lxbsm_hook *h, const struct path *path)
{
	struct sys_ctx *ctx = lxbsm_inflight(lxbsm_sys_entry);
	struct sys_capture *cap;
	char *p;

	if (!ctx || ctx->cap || ctx->cap_lost)
		return;
	lxbsm_hook_hit(h);
	cap = lxbsm_pool_get(&lxbsm_capture_pool);
	if (!cap) {
		ctx->cap_lost = true;
		lxbsm_lost(LXBSM_LOST_NO_SCRATCH);
		return;
	}
	p = lxbsm_d_path(path, cap->path, sizeof(cap->path));
	if (IS_ERR(p))
		strscpy(cap->path, "<unreachable>", sizeof(cap->path));
	else
		memmove(cap->path, p, strlen(p) + 1);
	lxbsm_attr_of(d_inode(path->dentry), &cap->attr);
	lxbsm_held_add(&captures, &cap->node);
	ctx->cap = cap;
}
NOKPROBE_SYMBOL(lxbsm_sys_capture);

static void capture_put(struct sys_capture *cap)
{
	lxbsm_held_del(&captures, &cap->node);
	lxbsm_pool_put(&lxbsm_capture_pool, cap);
}

static void put_recipe(struct lxbsm_rec *r, const struct tokop *op, const struct sys_ctx *ctx)
{
	const struct sys_capture *cap = ctx->cap;
	int dfd;

	for (; op->kind != TOK_END; op++) {
		switch (op->kind) {
		case TOK_ARG32:
			lxbsm_tok_arg32(r, op->n, ctx->args[op->a], op->text);
			break;
		case TOK_FD_VNODE:
			if (!cap) {
				lxbsm_tok_arg32(r, op->n, ctx->args[op->a], "non-file: fd");
				break;
			}
			lxbsm_tok_arg32(r, op->n, ctx->args[op->a], "fd");
			lxbsm_tok_path(r, cap->path);
			lxbsm_tok_attr32(r, &cap->attr);
			break;
		case TOK_UPATH_VNODE:
			if (cap) {
				lxbsm_tok_path(r, cap->path);
				lxbsm_tok_attr32(r, &cap->attr);
				break;
			}
			dfd = op->a < 0 ? AT_FDCWD : (int)ctx->args[op->a];
			lxbsm_tok_path(r, lxbsm_user_path(r, dfd,
							  (const char __user *)ctx->args[op->b]));
			break;
		}
	}
	if (ctx->cap_lost)
		lxbsm_tok_text(r, "lxbsm: file not captured (no buffer): path as the caller gave it");
}

int lxbsm_sys_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sys_ctx *ctx = (struct sys_ctx *)ri->data;
	long ret = regs_return_value(regs);
	const struct tokop *recipe = recipes[ctx->sel.ev];
	struct lxbsm_rec *r;

	if (recipe && lxbsm_selected(&ctx->sel, ret < 0)) {
		lxbsm_hook_hit(lxbsm_kret_hook(ri));
		r = lxbsm_rec_begin(ctx->sel.ev);
		if (r) {
			put_recipe(r, recipe, ctx);
			lxbsm_rec_finish(r, &ctx->sel.proc, ret);
		}
	}
	if (ctx->cap)
		capture_put(ctx->cap);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sys_ret);

/* At unload, no return handler running or to come: free what they hold. */
void lxbsm_sys_exit(void)
{
	lxbsm_held_release(&captures);
}
