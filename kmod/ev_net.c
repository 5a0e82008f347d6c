// SPDX-License-Identifier: GPL-2.0
/*
 * accept, accept4, connect, bind (every ABI, socketcall included, through
 * __sys_accept4, __sys_connect and __sys_bind): AUE_ACCEPT, AUE_CONNECT,
 * AUE_BIND with arg32 1 "fd" and the address as FreeBSD records it
 * (sock_inet32, sock_inet128 or sock_unix): the peer for accept, the
 * address asked for in connect and bind.
 */
#include <linux/file.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/net.h>
#include <linux/socket.h>
#include <linux/un.h>
#include <linux/uaccess.h>
#include <net/af_unix.h>
#include <net/sock.h>

#include "hooks.h"

enum { SOCK_ACCEPT, SOCK_CONNECT, SOCK_BIND };

static const enum lxbsm_event sock_events[] = {
	[SOCK_ACCEPT] = LXBSM_EV_ACCEPT,
	[SOCK_CONNECT] = LXBSM_EV_CONNECT,
	[SOCK_BIND] = LXBSM_EV_BIND,
};

struct sock_ctx {
	struct lxbsm_sel sel;
	int fd;
	const void __user *addr;
	int addrlen;
};

size_t lxbsm_sock_data_size(void)
{
	return sizeof(struct sock_ctx);
}

/* (int fd, struct sockaddr __user *addr, int addrlen or int __user *) */
int lxbsm_sock_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sock_ctx *ctx = (struct sock_ctx *)ri->data;

	if (current->flags & PF_KTHREAD)
		return 1;
	if (!lxbsm_interested(sock_events[lxbsm_kret_hook(ri)->arg], &ctx->sel))
		return 1;
	ctx->fd = (int)regs_get_kernel_argument(regs, 0);
	ctx->addr = (const void __user *)regs_get_kernel_argument(regs, 1);
	ctx->addrlen = (int)regs_get_kernel_argument(regs, 2);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_entry);

/* The peer of an accepted socket, read from the socket itself. */
static void put_peer(struct lxbsm_rec *r, int fd)
{
	struct sockaddr_storage ss = {};
	struct file *f = fget_raw(fd);
	struct socket *sock;
	struct sock *sk;

	if (!f)
		return;
	sock = sock_from_file(f);
	sk = sock ? sock->sk : NULL;
	if (sk && sk->sk_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = sk->sk_dport;
		in->sin_addr.s_addr = sk->sk_daddr;
		lxbsm_tok_sockaddr(r, in, sizeof(*in));
	} else if (sk && sk->sk_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = sk->sk_dport;
		in6->sin6_addr = sk->sk_v6_daddr;
		lxbsm_tok_sockaddr(r, in6, sizeof(*in6));
	} else if (sk && sk->sk_family == AF_UNIX) {
		/* The peer of a Unix socket is rarely named: record our own name. */
		struct unix_address *ua = smp_load_acquire(&unix_sk(sk)->addr);

		if (ua)
			lxbsm_tok_sockaddr(r, ua->name, ua->len);
	}
	fput(f);
}

int lxbsm_sock_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sock_ctx *ctx = (struct sock_ctx *)ri->data;
	int kind = lxbsm_kret_hook(ri)->arg;
	/* __sys_accept4/connect/bind return int: rax's upper half is not ours */
	long ret = (int)regs_return_value(regs);
	struct sockaddr_storage ss;
	struct lxbsm_rec *r;
	int len;

	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return 0;
	lxbsm_tok_arg32(r, 1, ctx->fd, "fd");
	if (kind == SOCK_ACCEPT) {
		if (ret >= 0)
			put_peer(r, ret);
	} else if (ctx->addr && ctx->addrlen > 0) {
		/* The kernel has just copied it in: the page is resident. */
		len = min_t(int, ctx->addrlen, sizeof(ss));
		if (!copy_from_user_nofault(&ss, ctx->addr, len))
			lxbsm_tok_sockaddr(r, &ss, len);
	}
	lxbsm_rec_finish(r, &ctx->sel.proc, ret);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_ret);
