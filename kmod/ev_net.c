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
#include <net/ipv6.h>
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
	bool want_peer;			/* accept by a login daemon with no audit id */
};

size_t lxbsm_sock_data_size(void)
{
	return sizeof(struct sock_ctx);
}

/* (int fd, struct sockaddr __user *addr, int addrlen or int __user *) */
int lxbsm_sock_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sock_ctx *ctx = (struct sock_ctx *)ri->data;
	int kind = lxbsm_kret_hook(ri)->arg;

	if (current->flags & PF_KTHREAD)
		return 1;
	/* A login daemon's accept is seen: its peer becomes its child's terminal. */
	ctx->want_peer = kind == SOCK_ACCEPT && lxbsm_proc_wants_peer(current);
	if (!lxbsm_interested(sock_events[kind], &ctx->sel) && !ctx->want_peer)
		return 1;
	ctx->fd = (int)regs_get_kernel_argument(regs, 0);
	ctx->addr = (const void __user *)regs_get_kernel_argument(regs, 1);
	ctx->addrlen = (int)regs_get_kernel_argument(regs, 2);
	return 0;
}
NOKPROBE_SYMBOL(lxbsm_sock_entry);

/*
 * The peer of an accepted socket, read from the socket itself, as a
 * sockaddr (0 if it has none); a Unix socket's peer is rarely named, so
 * that is our own name.
 */
static int peer_of(int fd, struct sockaddr_storage *ss)
{
	struct file *f = fget_raw(fd);
	struct socket *sock;
	struct sock *sk;
	int len = 0;

	if (!f)
		return 0;
	memset(ss, 0, sizeof(*ss));
	sock = sock_from_file(f);
	sk = sock ? sock->sk : NULL;
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

int lxbsm_sock_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct sock_ctx *ctx = (struct sock_ctx *)ri->data;
	int kind = lxbsm_kret_hook(ri)->arg;
	/* __sys_accept4/connect/bind return int: rax's upper half is not ours */
	long ret = (int)regs_return_value(regs);
	struct sockaddr_storage ss;
	struct lxbsm_rec *r;
	int len = 0;

	if (ctx->want_peer && ret >= 0) {
		struct lxbsm_tid tid;

		len = peer_of(ret, &ss);
		if (len && peer_tid(&ss, &tid))
			lxbsm_proc_accepted(current, &tid);
	}
	if (!lxbsm_selected(&ctx->sel, ret < 0))
		return 0;
	lxbsm_hook_hit(lxbsm_kret_hook(ri));
	r = lxbsm_rec_begin(ctx->sel.ev);
	if (!r)
		return 0;
	lxbsm_tok_arg32(r, 1, ctx->fd, "fd");
	if (kind == SOCK_ACCEPT) {
		if (ret >= 0 && !len)
			len = peer_of(ret, &ss);
		if (len)
			lxbsm_tok_sockaddr(r, &ss, len);
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
