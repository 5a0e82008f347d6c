// SPDX-License-Identifier: GPL-2.0
/*
 * accept, accept4, connect, bind (every ABI, socketcall included) and their
 * io_uring operations (IORING_OP_ACCEPT, CONNECT, BIND): AUE_ACCEPT,
 * AUE_CONNECT, AUE_BIND with arg32 1 "fd" and the address as FreeBSD
 * records it (sock_inet32, sock_inet128 or sock_unix): the peer for accept,
 * the address asked for in connect and bind; io_uring's add text "io_uring".
 *
 * Nothing is read back from user memory or through a descriptor after the
 * call: the address is the kernel's own copy (__sys_connect_file's argument,
 * security_socket_bind's for bind), and an accept's peer comes from the
 * socket the call installs (fd_install, after the wait, so a blocked accept
 * holds no kretprobe instance); __sys_accept4 only records failed accepts.
 * A connect keeps its kretprobe instance while it waits; when blocked
 * connects hold every one, a kprobe on security_socket_connect (before the
 * wait) sees the call missed and has the task record it on its way back to
 * user space, with the same record (connect_late()): no number of blocked
 * connects hides another's, and the miss is recovered, not lost.  io_uring's
 * connects are not recovered: they stay misses, lost records.
 * The "fd" argument comes from the syscall's registers; where no register
 * holds it (socketcall, io_uring) the record has none.  An io_uring accept
 * into a fixed-file slot (io_fixed_fd_install) returns 0: the slot is
 * chosen after.
 */
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/un.h>
#include <net/af_unix.h>
#include <net/ipv6.h>
#include <net/sock.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "arch.h"
#include "compat.h"
#include "hooks.h"
#include "later.h"
#include "pool.h"

/*
 * A connect the kretprobe missed is recorded in task_work (connect_late()):
 * lxbsm_inflight() sees every connect in flight (its hook is marked for
 * lookup), so one it does not see was missed.
 */
#ifdef LXBSM_HAVE_TASK_WORK
#define CONNECT_LATE 1
#else
#define CONNECT_LATE 0
#endif

/* socketcall(2) calls */
#define SYS_ACCEPT		5
#define SYS_ACCEPT4		18

/* the hook table's arg of each socket row */
enum { SOCK_ACCEPT, SOCK_CONNECT, SOCK_BIND, SOCK_BIND_URING };

static const enum lxbsm_event sock_events[] = {
	[SOCK_ACCEPT] = LXBSM_EV_ACCEPT,
	[SOCK_CONNECT] = LXBSM_EV_CONNECT,
	[SOCK_BIND] = LXBSM_EV_BIND,
	[SOCK_BIND_URING] = LXBSM_EV_BIND,
};

struct sock_ctx {
	struct lxbsm_sel sel;
	int kind;
	int fd;
	bool have_fd;
	bool uring;
	int addrlen;			/* bytes of addr, 0 if none */
	struct sockaddr_storage addr;	/* the kernel's copy */
};

size_t lxbsm_sock_data_size(void)
{
	return sizeof(struct sock_ctx);
}

/* The kernel's copy of a sockaddr, bounded by ours. */
static void copy_addr(struct sock_ctx *ctx, const void *kaddr, int len)
{
	ctx->addrlen = 0;
	if (!kaddr || len <= 0)
		return;
	ctx->addrlen = min_t(int, len, sizeof(ctx->addr));
	memcpy(&ctx->addr, kaddr, ctx->addrlen);
}

/*
 * The descriptor argument of the syscall current is in, if that is a
 * connect (CONNECT) or an accept (ACCEPT); for socketcall(2), whose
 * arguments are in user memory, *fd is -1.
 */
static bool socket_syscall(int kind, int *fd)
{
	struct pt_regs *regs = task_pt_regs(current);
	long nr = syscall_get_nr(current, regs);
	unsigned long args[6];
	bool ok;

	syscall_get_arguments(current, regs, args);
	*fd = (int)args[0];
	if (in_compat_syscall()) {
		if (nr == LXBSM_NR_COMPAT_SOCKETCALL) {
			*fd = -1;
			if (kind == SOCK_ACCEPT)
				return args[0] == SYS_ACCEPT || args[0] == SYS_ACCEPT4;
			return true;	/* __sys_connect_file: a connect */
		}
		return nr == (kind == SOCK_ACCEPT ? LXBSM_NR_COMPAT_ACCEPT4 : LXBSM_NR_COMPAT_CONNECT);
	}
	nr &= ~(long)__X32_SYSCALL_BIT;
	if (kind == SOCK_ACCEPT)
		ok = nr == __NR_accept || nr == __NR_accept4;
	else
		ok = nr == __NR_connect;
	return ok;
}

/*
 * __sys_accept4(int fd, ...): failures only (successes: lxbsm_sock_installed)
 * __sys_connect_file(struct file *, struct sockaddr_storage *, int addrlen, int)
 * __sys_bind(int fd, struct sockaddr __user *, int addrlen): the address
 *	comes from security_socket_bind (lxbsm_bind_addr_pre)
 * __sys_bind_socket(struct socket *, struct sockaddr_storage *, int addrlen):
 *	io_uring only (a bind syscall reaches it too, and is seen above)
 */
int lxbsm_sock_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sock_ctx *ctx = (struct sock_ctx *)ri->data;
	int kind = lxbsm_kret_hook(ri)->arg;

	if (current->flags & PF_KTHREAD)
		return 1;
	ctx->uring = lxbsm_in_io_uring();
	if (kind == SOCK_BIND_URING && !ctx->uring)
		return 1;
	if (!lxbsm_interested(sock_events[kind], &ctx->sel))
		return 1;
	/* A blocked accept holds its instance only to record its failure. */
	if (kind == SOCK_ACCEPT && !lxbsm_selected(&ctx->sel, true))
		return 1;
	ctx->kind = kind;
	ctx->addrlen = 0;
	ctx->have_fd = false;
	switch (kind) {
	case SOCK_ACCEPT:
	case SOCK_BIND:
		ctx->fd = (int)regs_get_kernel_argument(regs, 0);
		ctx->have_fd = true;
		break;
	case SOCK_CONNECT:
		ctx->have_fd = !ctx->uring && socket_syscall(kind, &ctx->fd) && ctx->fd >= 0;
		copy_addr(ctx, (const void *)regs_get_kernel_argument(regs, 1),
			  (int)regs_get_kernel_argument(regs, 2));
		break;
	case SOCK_BIND_URING:
		copy_addr(ctx, (const void *)regs_get_kernel_argument(regs, 1),
			  (int)regs_get_kernel_argument(regs, 2));
		break;
	}
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_entry);

/*
 * security_socket_bind(struct socket *, struct sockaddr *, int addrlen):
 * the address a bind syscall's kernel copy holds, for its record.
 */
int lxbsm_bind_addr_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct sock_ctx *ctx;

	if (!lxbsm_inflight_any())
		return 0;
	ctx = lxbsm_inflight(lxbsm_sock_entry);
	if (ctx && ctx->kind == SOCK_BIND)
		copy_addr(ctx, (const void *)regs_get_kernel_argument(regs, 1),
			  (int)regs_get_kernel_argument(regs, 2));
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_bind_addr_pre);

/*
 * The peer of an accepted socket, read from the socket itself, as a
 * sockaddr (0 if it has none); a Unix socket's peer is rarely named, so
 * that is our own name.
 */
static int sock_peer(struct socket *sock, struct sockaddr_storage *ss)
{
	struct sock *sk = sock->sk;
	int len = 0;

	memset(ss, 0, sizeof(*ss));
	if (sk && sk->sk_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = sk->sk_dport;
		in->sin_addr.s_addr = sk->sk_daddr;
		len = sizeof(*in);
	} else if (sk && sk->sk_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = sk->sk_dport;
		in6->sin6_addr = sk->sk_v6_daddr;
		len = sizeof(*in6);
	} else if (sk && sk->sk_family == AF_UNIX) {
		/* pairs with the store-release that binds the name */
		struct unix_address *ua = smp_load_acquire(&unix_sk(sk)->addr);

		if (ua) {
			len = min_t(int, ua->len, sizeof(*ss));
			memcpy(ss, ua->name, len);
		}
	}
	return len;
}

static int peer_of(int fd, struct sockaddr_storage *ss)
{
	struct file *f = fget_raw(fd);
	struct socket *sock;
	int len = 0;

	if (!f)
		return 0;
	sock = lxbsm_sock_from_file(f);
	if (sock)
		len = sock_peer(sock, ss);
	fput(f);
	return len;
}

/*
 * An Internet peer as a BSM terminal id: the port (host order, as OpenBSM's
 * tools print it) and the address; an IPv4-mapped IPv6 peer is IPv4.
 */
static bool peer_tid(const struct sockaddr_storage *ss, struct lxbsm_tid *tid)
{
	memset(tid, 0, sizeof(*tid));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		tid->type = 4;
		tid->port = ntohs(in->sin_port);
		memcpy(tid->addr, &in->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		tid->port = ntohs(in6->sin6_port);
		if (ipv6_addr_v4mapped(&in6->sin6_addr)) {
			tid->type = 4;
			memcpy(tid->addr, &in6->sin6_addr.s6_addr32[3], 4);
		} else {
			tid->type = 16;
			memcpy(tid->addr, &in6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

bool lxbsm_sock_peer_tid(int fd, struct lxbsm_tid *tid)
{
	struct sockaddr_storage ss;

	return peer_of(fd, &ss) && peer_tid(&ss, tid);
}

/*
 * The record of a socket call that returned @ret, from its context: the
 * return handler's, or a connect's that the return handler missed
 * (connect_late()).  @h is the hook that saw it.
 */
static void sock_record(struct lxbsm_hook *h, const struct sock_ctx *ctx, long ret)
{
	struct lxbsm_rec *r;

	if (ctx->kind == SOCK_ACCEPT && ret >= 0)
		return;		/* recorded as it was installed */
	/*
	 * io_uring tries a connect without blocking first and, if it is in
	 * progress, calls again once the socket is ready: that attempt is
	 * recorded (EINPROGRESS, as for a non-blocking connect(2)), the
	 * "already connected" of the second call is not.
	 */
	if (ctx->uring && (ret == -EAGAIN || ret == -EISCONN))
		return;
	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return;
	lxbsm_hook_hit(h);
	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return;
	if (ctx->have_fd)
		lxbsm_tok_arg32(r, 1, ctx->fd, "fd");
	if (ctx->addrlen)
		lxbsm_tok_sockaddr(r, &ctx->addr, ctx->addrlen);
	if (ctx->uring)
		lxbsm_tok_text(r, "io_uring");
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
}

int lxbsm_sock_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	/* these return int: rax's upper half is not ours */
	sock_record(lxbsm_kret_hook(ri), (struct sock_ctx *)ri->data,
		    (int)regs_return_value(regs));
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_ret);

/* A connect the return handler missed, recorded by its task (connect_late()). */
struct late_connect {
	struct callback_head cb;
	struct lxbsm_hook *hook;	/* security_socket_connect's */
	struct sock_ctx ctx;
};

/*
 * One per connect made while blocked connects hold every instance of the
 * kretprobe, until its task has recorded it; the pool's work refills it
 * once a quarter is used.  Empty, the connect stays a miss: a lost record.
 */
#define LATE_CONNECT_POOL	(CONNECT_LATE ? 256 : 0)
LXBSM_POOL_DEFINE(lxbsm_late_connect_pool, "late connect", sizeof(struct late_connect),
		  LATE_CONNECT_POOL);

#if CONNECT_LATE

/*
 * task_work, on the task's way back to user space after the connect, wait
 * and all: its return value is still in the registers.  Nothing can have
 * changed it yet: a pending signal is handled by get_signal(), which runs
 * queued task_work before it delivers anything or rewrites the registers
 * to restart the call, and a ptrace stop at the syscall's exit
 * (ptrace_notify()) runs it before the tracer can look.  So an interrupted
 * connect shows -ERESTARTSYS here, recorded as EINTR as the return handler
 * records it.  A connect returns 0 or an error: anything else would be a
 * restart's rewrite (the syscall number), recorded as EINTR too.
 */
static void late_connect_work(struct callback_head *cb)
{
	struct late_connect *lc = container_of(cb, struct late_connect, cb);
	long ret = (int)syscall_get_return_value(current, task_pt_regs(current));

	if (ret > 0)
		ret = -EINTR;
	sock_record(lc->hook, &lc->ctx, ret);
	lxbsm_pool_put(&lxbsm_late_connect_pool, lc);
	lxbsm_later_done(false);
}

/*
 * A connect(2) (or socketcall's) that __sys_connect_file's kretprobe missed,
 * all of its instances held (by connects blocked for as long as their
 * callers like, say): its task records it on its way back to user space.
 * True if it will; false leaves it a miss, a lost record.
 */
static bool connect_late(struct lxbsm_hook *h, struct pt_regs *regs)
{
	struct late_connect *lc;
	struct lxbsm_sel sel;
	int fd;

	/* io_uring's connects (io_uring_enter, io-wq workers) stay misses */
	if (current->flags & (PF_KTHREAD | PF_IO_WORKER | PF_EXITING) ||
	    !socket_syscall(SOCK_CONNECT, &fd))
		return false;
	/*
	 * Interested, with no call in flight: the entry handler would have
	 * kept it, so the kretprobe missed it.  Not interested: nothing to
	 * record; had the kretprobe missed it, the loss is reported anyway,
	 * as no one can tell it from a call the entry handler let go.
	 */
	if (!lxbsm_interested(LXBSM_EV_CONNECT, &sel))
		return false;
	lc = lxbsm_pool_get(&lxbsm_late_connect_pool);
	if (!lc)
		return false;
	lc->hook = h;
	lc->ctx.sel = sel;
	lc->ctx.kind = SOCK_CONNECT;
	lc->ctx.uring = false;
	lc->ctx.fd = fd;
	lc->ctx.have_fd = fd >= 0;
	copy_addr(&lc->ctx, (const void *)regs_get_kernel_argument(regs, 1),
		  (int)regs_get_kernel_argument(regs, 2));
	/* Queued, it holds the module until its task runs it (later.h). */
	if (lxbsm_later(&lc->cb, late_connect_work))
		return true;
	lxbsm_pool_put(&lxbsm_late_connect_pool, lc);
	return false;
}
NOKPROBE_SYMBOL(connect_late);

#else
static bool connect_late(struct lxbsm_hook *h, struct pt_regs *regs)
{
	return false;
}
#endif

/*
 * security_socket_connect(struct socket *, struct sockaddr *, int addrlen):
 * inside __sys_connect_file, after its entry handler and before any wait.
 * A connect the kretprobe holds is its business; one it missed is recorded
 * late (connect_late()), and counted as recovered so that the miss does not
 * become a lost record.
 */
int lxbsm_connect_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct sock_ctx *ctx;

	if (lxbsm_inflight_any()) {
		ctx = lxbsm_inflight(lxbsm_sock_entry);
		if (ctx && ctx->kind == SOCK_CONNECT)
			return 0;
	}
	if (connect_late(lxbsm_kprobe_hook(p), regs))
		lxbsm_hook_recovered(lxbsm_kprobe_hook(p));
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_connect_pre);

/*
 * fd_install of a socket (lxbsm_fd_install_pre): a successful accept,
 * syscall or io_uring, recorded with the peer of the very socket it
 * returns.  io_uring installs sockets for IORING_OP_SOCKET too: only an
 * accepted one is connected.
 */
void lxbsm_sock_installed(struct lxbsm_hook *h, int fd, struct socket *sock)
{
	struct sockaddr_storage ss;
	struct lxbsm_sel sel;
	struct lxbsm_rec *r;
	bool uring = lxbsm_in_io_uring();
	bool have_fd = false;
	int lfd = -1, len;

	if (uring) {
		if (READ_ONCE(sock->state) != SS_CONNECTED)
			return;
	} else if (socket_syscall(SOCK_ACCEPT, &lfd)) {
		have_fd = lfd >= 0;
	} else {
		return;
	}
	if (!lxbsm_interested(LXBSM_EV_ACCEPT, &sel))
		return;
	len = sock_peer(sock, &ss);
	if (!lxbsm_selected(&sel, false))
		return;
	lxbsm_hook_hit(h);
	r = lxbsm_rec_begin(LXBSM_EV_ACCEPT);
	if (!r)
		return;
	if (have_fd)
		lxbsm_tok_arg32(r, 1, lfd, "fd");
	if (len)
		lxbsm_tok_sockaddr(r, &ss, len);
	if (uring)
		lxbsm_tok_text(r, "io_uring");
	lxbsm_rec_finish(r, &sel.proc, fd);
}

/*
 * security_sock_graft(struct sock *sk, struct socket *parent): an accept
 * (any protocol, syscall or io_uring) joins the connection @sk to the
 * socket it returns, after the wait, in the accepting task, under
 * sk_callback_lock.  A login daemon's peer becomes its child's terminal.
 * This runs on accepts only, not on every open as fd_install does, so it
 * stays armed at no cost to anything else.  An accept that fails after
 * this (its address copied out to a bad pointer) still set the peer: the
 * daemon serves no child for it, and its next accept sets the next peer.
 */
int lxbsm_sock_graft_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct socket *parent = (struct socket *)regs_get_kernel_argument(regs, 1);
	struct sockaddr_storage ss;
	struct lxbsm_tid tid;

	if (current->flags & PF_KTHREAD || !lxbsm_proc_wants_peer(current))
		return 0;
	if (sock_peer(parent, &ss) && peer_tid(&ss, &tid)) {
		lxbsm_hook_hit(lxbsm_kprobe_hook(p));
		lxbsm_proc_accepted(current, &tid);
	}
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_graft_pre);

/*
 * io_fixed_fd_install(struct io_kiocb *, unsigned int issue_flags,
 *		       struct file *, unsigned int file_slot): an io_uring accept
 * into a fixed-file slot, no descriptor.
 */
int lxbsm_fixed_install_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *f = (struct file *)regs_get_kernel_argument(regs, 2);
	struct socket *sock;

	if (current->flags & PF_KTHREAD || !lxbsm_in_io_uring())
		return 0;
	sock = lxbsm_sock_from_file(f);
	if (sock)
		lxbsm_sock_installed(lxbsm_kprobe_hook(p), 0, sock);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_fixed_install_pre);
