// SPDX-License-Identifier: GPL-2.0
/*
 * BSM records built in the kernel.
 *
 * A record is built in a per-CPU scratch buffer (with preemption disabled,
 * so no two builders share one), then copied into the ring in one
 * reservation of its exact size.  Layouts follow OpenBSM (big-endian,
 * header32 version 11 with milliseconds, subject32 or subject32_ex,
 * return32 with a BSM errno, trailer) and the FreeBSD kernel's token order.
 *
 * When the ring is full and the policy has cnt, a record is counted as lost
 * (by reason, in the producer page) and, as soon as a later record finds
 * room, a record whose text token says how many were lost goes in first, so
 * every reader sees the gap where it happened.  Without cnt, a process that
 * made a record the ring cannot take waits (killably) for room on its way
 * back to user space, through task_work; where the kernel does not export
 * task_work_add and synchronize_rcu_tasks the module behaves as with cnt,
 * and says so at load and in its status (can_wait = 0).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/binfmts.h>
#include <linux/compat.h>
#include <linux/delay.h>
#include <linux/cred.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/percpu.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/timekeeping.h>
#include <linux/un.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "lxbsm.h"
#include "later.h"
#include "pool.h"
#include "xctl.h"

#ifdef LXBSM_HAVE_TASK_WORK
#define LXBSM_CAN_WAIT 1
#else
#define LXBSM_CAN_WAIT 0
#endif

#define AUT_TRAILER	0x13
#define AUT_HEADER32	0x14
#define AUT_OPAQUE	0x29
#define AUT_PATH	0x23
#define AUT_SUBJECT32	0x24
#define AUT_RETURN32	0x27
#define AUT_TEXT	0x28
#define AUT_ARG32	0x2d
#define AUT_SEQ		0x2f
#define AUT_ATTR32	0x3e
#define AUT_EXIT	0x52
#define AUT_ARG64	0x71
#define AUT_SUBJECT32_EX 0x7a
#define AUT_SOCKINET32	0x80
#define AUT_SOCKINET128	0x81
#define AUT_SOCKUNIX	0x82

#define HEADER_VERSION	11	/* AUDIT_HEADER_VERSION_OPENBSM */
#define HEADER32_SIZE	18
#define TRAILER_SIZE	7
#define TRAILER_MAGIC	0xb105
/* Room always kept for subject32_ex + return32 + seq + trailer. */
#define TAIL_ROOM	(53 + 6 + 5 + TRAILER_SIZE)
#define BODY_MAX	(LXBSM_MAX_RECORD - TAIL_ROOM)

struct lxbsm_rec {
	u8 *buf;
	u32 len;
	u32 seq_off;			/* where the seq token is, 0 if none */
	bool overflow;
	enum lxbsm_event ev;
	u64 cost_t0;			/* local_clock() at begin; 0: not timed */
	bool own;			/* lxbsm_rec_new(): its own buffer, not the scratch */
};

struct lxbsm_scratch {
	bool busy;
	bool hook_busy;			/* hook_path is taken */
	struct lxbsm_rec rec;
	char path[2][LXBSM_PATH_MAX];
	char hook_path[LXBSM_PATH_MAX];
	u8 buf[LXBSM_MAX_RECORD];
};

static DEFINE_PER_CPU(struct lxbsm_scratch *, scratch);
static atomic64_t waited = ATOMIC64_INIT(0);
static atomic64_t pending_lost = ATOMIC64_INIT(0);

/* lxbsm_uid() and lxbsm_gid() give what from_kuid() and from_kgid() give. */
static bool ids_are_the_initial_namespaces(void)
{
	static const u32 ids[] = { 0, 1, 1000, 65534, 0x7fffffff, (u32)-2, (u32)-1 };
	int i;

	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		kuid_t u = KUIDT_INIT(ids[i]);
		kgid_t g = KGIDT_INIT(ids[i]);

		if (lxbsm_uid(u) != from_kuid(&init_user_ns, u) ||
		    lxbsm_gid(g) != from_kgid(&init_user_ns, g))
			return false;
	}
	return true;
}

int lxbsm_record_init(void)
{
	int cpu;

	if (!ids_are_the_initial_namespaces()) {
		pr_err("kernel ids are not the initial user namespace's on this kernel: not loading\n");
		return -EINVAL;
	}
	for_each_possible_cpu(cpu) {
		struct lxbsm_scratch *s;

		s = kvzalloc_node(sizeof(*s), GFP_KERNEL, cpu_to_node(cpu));
		if (!s) {
			lxbsm_record_exit();
			return -ENOMEM;
		}
		per_cpu(scratch, cpu) = s;
	}
	return 0;
}

void lxbsm_record_exit(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		kvfree(per_cpu(scratch, cpu));
		per_cpu(scratch, cpu) = NULL;
	}
}

/* ---- byte writers; past BODY_MAX they only set overflow ---- */

static __always_inline bool room(struct lxbsm_rec *r, size_t n, size_t limit)
{
	if (r->overflow || r->len + n > limit) {
		r->overflow = true;
		return false;
	}
	return true;
}

/*
 * A token is written through a cursor held in a register, between at() and
 * done(): stores through r->buf + r->len would reload both after every byte
 * stored (a byte store may alias them).
 */
static __always_inline u8 *at(struct lxbsm_rec *r)
{
	return r->buf + r->len;
}

static __always_inline void done(struct lxbsm_rec *r, u8 *c)
{
	r->len = c - r->buf;
}

static __always_inline void w8(u8 **c, u8 v)
{
	*(*c)++ = v;
}

static __always_inline void w16(u8 **c, u16 v)
{
	put_unaligned_be16(v, *c);
	*c += 2;
}

static __always_inline void w32(u8 **c, u32 v)
{
	put_unaligned_be32(v, *c);
	*c += 4;
}

static __always_inline void w64(u8 **c, u64 v)
{
	put_unaligned_be64(v, *c);
	*c += 8;
}

static __always_inline void wmem(u8 **c, const void *p, size_t n)
{
	memcpy(*c, p, n);
	*c += n;
}

/*
 * header32 with the byte count left to lxbsm_rec_finish() and the time to
 * the moment the record enters the ring (stamp_apply()).
 */
#define HEADER32_SEC	10	/* offsets of the time in header32 */
#define HEADER32_MSEC	14

static void put_header32(struct lxbsm_rec *r, u16 event)
{
	u8 *c = at(r);

	w8(&c, AUT_HEADER32);
	w32(&c, 0);
	w8(&c, HEADER_VERSION);
	w16(&c, event);
	w16(&c, 0);
	w32(&c, 0);
	w32(&c, 0);
	done(r, c);
}

struct lxbsm_rec *lxbsm_rec_begin(enum lxbsm_event ev)
{
	struct lxbsm_scratch *s;
	struct lxbsm_rec *r;

	preempt_disable();
	s = this_cpu_read(scratch);
	if (unlikely(s->busy)) {
		preempt_enable();
		lxbsm_lost(LXBSM_LOST_NO_SCRATCH);
		return NULL;
	}
	s->busy = true;
	r = &s->rec;
	r->buf = s->buf;
	r->len = 0;
	r->seq_off = 0;
	r->overflow = false;
	r->ev = ev;
	r->own = false;
	r->cost_t0 = static_branch_unlikely(&lxbsm_cost_on) ? local_clock() : 0;
	put_header32(r, lxbsm_event_aue[ev]);
	return r;
}

/*
 * Process context only: a record in a buffer of its own, so that its
 * builder may sleep (read a file, wait for room in the ring) while it is
 * open.  NULL if there is no memory.
 */
struct lxbsm_rec *lxbsm_rec_new(enum lxbsm_event ev)
{
	struct lxbsm_rec *r;

	might_sleep();
	r = kvmalloc(sizeof(*r) + LXBSM_MAX_RECORD, GFP_KERNEL);
	if (!r)
		return NULL;
	r->buf = (u8 *)(r + 1);
	r->len = 0;
	r->seq_off = 0;
	r->overflow = false;
	r->ev = ev;
	r->own = true;
	r->cost_t0 = 0;
	put_header32(r, lxbsm_event_aue[ev]);
	return r;
}

static void rec_release(struct lxbsm_rec *r)
{
	struct lxbsm_scratch *s;

	if (r->own) {
		kvfree(r);
		return;
	}
	s = container_of(r, struct lxbsm_scratch, rec);
	s->busy = false;
	preempt_enable();
}

void lxbsm_rec_abort(struct lxbsm_rec *r)
{
	rec_release(r);
}

char *lxbsm_rec_pathbuf(struct lxbsm_rec *r, int which)
{
	return container_of(r, struct lxbsm_scratch, rec)->path[which];
}

char *lxbsm_hook_pathbuf_get(void)
{
	struct lxbsm_scratch *s;

	preempt_disable();
	s = this_cpu_read(scratch);
	if (unlikely(s->hook_busy)) {
		preempt_enable();
		lxbsm_lost(LXBSM_LOST_NO_SCRATCH);
		return NULL;
	}
	s->hook_busy = true;
	return s->hook_path;
}

void lxbsm_hook_pathbuf_put(char *buf)
{
	struct lxbsm_scratch *s = container_of(buf, struct lxbsm_scratch, hook_path[0]);

	s->hook_busy = false;
	preempt_enable();
}

/* ---- tokens ---- */

/* A string token of the @len bytes at @s (at most U16_MAX - 1) and a NUL. */
static void put_string_token_len(struct lxbsm_rec *r, u8 id, const char *s, size_t len)
{
	size_t n = len + 1;
	u8 *c;

	if (!room(r, 3 + n, BODY_MAX))
		return;
	c = at(r);
	w8(&c, id);
	w16(&c, n);
	wmem(&c, s, len);
	w8(&c, 0);
	done(r, c);
}

static void put_string_token(struct lxbsm_rec *r, u8 id, const char *s)
{
	put_string_token_len(r, id, s, strnlen(s, U16_MAX - 1));
}

void lxbsm_tok_path(struct lxbsm_rec *r, const char *path)
{
	put_string_token(r, AUT_PATH, path);
}

void lxbsm_tok_path_len(struct lxbsm_rec *r, const char *path, size_t len)
{
	put_string_token_len(r, AUT_PATH, path, min_t(size_t, len, U16_MAX - 1));
}

void lxbsm_tok_text(struct lxbsm_rec *r, const char *text)
{
	put_string_token(r, AUT_TEXT, text);
}

/* arg32 (@wide false) or arg64: argument @n, its @value and @len bytes of @text. */
static void put_arg(struct lxbsm_rec *r, bool wide, u8 n, u64 value, const char *text,
		    size_t len)
{
	u8 *c;

	if (!room(r, (wide ? 12 : 8) + len, BODY_MAX))
		return;
	c = at(r);
	w8(&c, wide ? AUT_ARG64 : AUT_ARG32);
	w8(&c, n);
	if (wide)
		w64(&c, value);
	else
		w32(&c, value);
	w16(&c, len);
	wmem(&c, text, len);
	done(r, c);
}

void __lxbsm_tok_arg32(struct lxbsm_rec *r, u8 n, u32 value, const char *text, size_t len)
{
	put_arg(r, false, n, value, text, len);
}

void __lxbsm_tok_arg64(struct lxbsm_rec *r, u8 n, u64 value, const char *text, size_t len)
{
	put_arg(r, true, n, value, text, len);
}

void lxbsm_tok_opaque(struct lxbsm_rec *r, const void *data, u16 len)
{
	u8 *c;

	if (!room(r, 3 + len, BODY_MAX))
		return;
	c = at(r);
	w8(&c, AUT_OPAQUE);
	w16(&c, len);
	wmem(&c, data, len);
	done(r, c);
}

/* attr32 as the FreeBSD kernel writes it: permission bits, no file type. */
void lxbsm_attr_of(const struct inode *inode, struct lxbsm_attr *a)
{
	a->mode = inode->i_mode & 07777;
	a->uid = lxbsm_uid(inode->i_uid);
	a->gid = lxbsm_gid(inode->i_gid);
	a->fsid = new_encode_dev(inode->i_sb->s_dev);
	a->nodeid = inode->i_ino;
	a->dev = new_encode_dev(inode->i_rdev);
}

void lxbsm_tok_attr32(struct lxbsm_rec *r, const struct lxbsm_attr *a)
{
	u8 *c;

	if (!room(r, 29, BODY_MAX))
		return;
	c = at(r);
	w8(&c, AUT_ATTR32);
	w32(&c, a->mode);
	w32(&c, a->uid);
	w32(&c, a->gid);
	w32(&c, a->fsid);
	w64(&c, a->nodeid);
	w32(&c, a->dev);
	done(r, c);
}

void lxbsm_tok_exit(struct lxbsm_rec *r, u32 status, u32 retval)
{
	u8 *c;

	if (!room(r, 9, BODY_MAX))
		return;
	c = at(r);
	w8(&c, AUT_EXIT);
	w32(&c, status);
	w32(&c, retval);
	done(r, c);
}

/*
 * A socket address as the FreeBSD kernel records it: sock_inet32 (0x80),
 * sock_inet128 (0x81) or sock_unix (0x82), family as this host numbers it,
 * port and address in network order.  An abstract Unix name (leading NUL)
 * is written with a leading '@', as ss(8) shows it.
 */
void lxbsm_tok_sockaddr(struct lxbsm_rec *r, const void *sa, size_t len)
{
	sa_family_t family;
	u8 *c;

	if (len < sizeof(family))
		return;
	family = ((const struct sockaddr *)sa)->sa_family;
	if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = sa;

		if (!room(r, 9, BODY_MAX))
			return;
		c = at(r);
		w8(&c, AUT_SOCKINET32);
		w16(&c, AF_INET);
		wmem(&c, &in->sin_port, 2);
		wmem(&c, &in->sin_addr, 4);
		done(r, c);
	} else if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = sa;

		if (!room(r, 21, BODY_MAX))
			return;
		c = at(r);
		w8(&c, AUT_SOCKINET128);
		w8(&c, 0);
		w8(&c, AF_INET6);
		wmem(&c, &in6->sin6_port, 2);
		wmem(&c, &in6->sin6_addr, 16);
		done(r, c);
	} else if (family == AF_UNIX) {
		const struct sockaddr_un *un = sa;
		size_t plen = min(len - sizeof(family), sizeof(un->sun_path));
		bool abstract = plen && un->sun_path[0] == '\0';
		const char *p = un->sun_path + abstract;
		size_t n;

		n = strnlen(p, plen - abstract);
		if (!room(r, 3 + abstract + n + 1, BODY_MAX))
			return;
		c = at(r);
		w8(&c, AUT_SOCKUNIX);
		w8(&c, 0);
		w8(&c, AF_UNIX);
		if (abstract)
			w8(&c, '@');
		wmem(&c, p, n);
		w8(&c, 0);
		done(r, c);
	}
}

/* The head of an exec_args/exec_env token, its count (0 for now) at @head + 1. */
static void put_strings_head(struct lxbsm_rec *r, u8 id, u32 *head)
{
	u8 *c = at(r);

	*head = r->len;
	w8(&c, id);
	w32(&c, 0);
	done(r, c);
}

/* Keep whole strings only: cut back to the last NUL within @n bytes. */
static u32 count_strings(u8 *p, u32 *n)
{
	u32 i, count = 0;

	while (*n && p[*n - 1] != '\0')
		(*n)--;
	for (i = 0; i < *n; i++)
		count += p[i] == '\0';
	return count;
}

void lxbsm_tok_strings_user(struct lxbsm_rec *r, u8 id, const char __user *start,
			    unsigned long len, u32 budget)
{
	u32 head, n, count;

	if (!room(r, 5, BODY_MAX))
		return;
	put_strings_head(r, id, &head);
	n = min_t(unsigned long, len, min_t(u32, budget, BODY_MAX - r->len));
	if (copy_from_user_nofault(r->buf + r->len, start, n))
		n = 0;
	count = count_strings(r->buf + r->len, &n);
	r->len += n;
	put_unaligned_be32(count, r->buf + head + 1);
}

void lxbsm_tok_strings_argv(struct lxbsm_rec *r, u8 id, const void __user *argv,
			    bool compat, u32 budget)
{
	u32 head, start, count = 0, i;

	if (!argv || !room(r, 5, BODY_MAX))
		return;
	put_strings_head(r, id, &head);
	start = r->len;
	for (i = 0; i < MAX_ARG_STRINGS; i++) {
		const char __user *s;
		long n, left = min_t(long, budget - (r->len - start), BODY_MAX - r->len);

		if (compat) {
			u32 p;

			if (copy_from_user_nofault(&p, (const u32 __user *)argv + i, sizeof(p)))
				break;
			s = compat_ptr(p);
		} else {
			if (copy_from_user_nofault(&s, (const char __user * const __user *)argv + i,
						   sizeof(s)))
				break;
		}
		if (!s || left <= 1)
			break;
		n = lxbsm_strncpy_user_nofault(r->buf + r->len, s, left);
		if (n < 0 || n >= left)	/* unreadable, or does not fit whole */
			break;
		r->len += n + 1;	/* with its NUL */
		count++;
	}
	put_unaligned_be32(count, r->buf + head + 1);
}

/* ---- finishing ---- */

/* The subject: @p's ids, and @cred and @pid (current's unless a record says otherwise). */
static void put_subject(struct lxbsm_rec *r, const struct lxbsm_proc_snap *p,
			const struct cred *cred, pid_t pid)
{
	bool ex = p->tid.type == 16;
	u8 *c = at(r);

	w8(&c, ex ? AUT_SUBJECT32_EX : AUT_SUBJECT32);
	w32(&c, p->auid);
	w32(&c, lxbsm_uid(cred->euid));
	w32(&c, lxbsm_gid(cred->egid));
	w32(&c, lxbsm_uid(cred->uid));
	w32(&c, lxbsm_gid(cred->gid));
	w32(&c, pid);
	w32(&c, p->asid);
	w32(&c, p->tid.port);
	if (ex) {
		w32(&c, 16);
		wmem(&c, p->tid.addr, 16);
	} else {
		wmem(&c, p->tid.addr, 4);
	}
	done(r, c);
}

static void put_return(struct lxbsm_rec *r, long ret)
{
	u8 *c = at(r);

	w8(&c, AUT_RETURN32);
	if (ret < 0) {
		w8(&c, lxbsm_errno_to_bsm(-ret));
		w32(&c, (u32)-1);
	} else {
		w8(&c, 0);
		w32(&c, (u32)ret);
	}
	done(r, c);
}

static void put_trailer(struct lxbsm_rec *r)
{
	u32 len = r->len + 7;
	u8 *c = at(r);

	w8(&c, AUT_TRAILER);
	w16(&c, TRAILER_MAGIC);
	w32(&c, len);
	done(r, c);
	put_unaligned_be32(len, r->buf + 1);
}

/*
 * ---- into the ring: time and sequence number follow the ring's order ----
 *
 * Both are taken under the ring's producer lock, once the record's room is
 * reserved (ring.h, struct lxbsm_ring_stamp), so a reader sees header times
 * that never go backwards (unless the system clock itself is set back) and
 * sequence numbers that rise by one from record to record in the ring.
 */
struct rec_stamp {
	struct lxbsm_ring_stamp ops;
	u32 seq_off;
	struct timespec64 ts;
	u32 seq;
};

static u32 seq_no;		/* under the ring's producer lock */

static void stamp_take(struct lxbsm_ring_stamp *s)
{
	struct rec_stamp *st = container_of(s, struct rec_stamp, ops);

	ktime_get_real_ts64(&st->ts);
	if (st->seq_off)
		st->seq = ++seq_no;
}

static void stamp_apply(const struct lxbsm_ring_stamp *s, void *rec, u32 size)
{
	const struct rec_stamp *st = container_of(s, struct rec_stamp, ops);
	u8 *p = rec;

	put_unaligned_be32((u32)st->ts.tv_sec, p + HEADER32_SEC);
	put_unaligned_be32(st->ts.tv_nsec / NSEC_PER_MSEC, p + HEADER32_MSEC);
	if (st->seq_off && st->seq_off + 5 <= size)
		put_unaligned_be32(st->seq, p + st->seq_off + 1);
}

/* One record of ours into the ring, stamped; -ENOSPC (not counted) if full. */
static int write_stamped(const u8 *buf, u32 len, u32 seq_off)
{
	struct rec_stamp st = {
		.ops = { .take = stamp_take, .apply = stamp_apply },
		.seq_off = seq_off,
	};

	return lxbsm_ring_try_write(&lxbsm_ring, buf, len, LXBSM_REC_BSM, &st.ops);
}

void lxbsm_lost(enum lxbsm_lost_reason why)
{
	lxbsm_ring_lost(&lxbsm_ring, why);
	atomic64_inc(&pending_lost);
}

/* @n records lost at once (calls a hook missed: hooks.c) */
void lxbsm_lost_n(enum lxbsm_lost_reason why, u64 n)
{
	lxbsm_ring_lost_n(&lxbsm_ring, why, n);
	atomic64_add(n, &pending_lost);
}

/* Tell readers how many records are missing here; false if no room yet. */
static bool emit_lost_notice(u64 n)
{
	struct lxbsm_rec r;
	u8 buf[HEADER32_SIZE + 3 + 48 + 6 + TRAILER_SIZE];
	char text[48];

	r.buf = buf;
	r.len = 0;
	r.overflow = false;
	r.ev = LXBSM_EV_LOST;
	put_header32(&r, lxbsm_event_aue[LXBSM_EV_LOST]);
	snprintf(text, sizeof(text), "lxbsm: %llu records lost", n);
	put_string_token(&r, AUT_TEXT, text);
	put_return(&r, 0);
	put_trailer(&r);
	return write_stamped(buf, r.len, 0) == 0;
}

/* A record waiting, with its process, for room in the ring. */
struct deferred {
	struct callback_head cb;
	struct lxbsm_pool *pool;	/* where it came from */
	u32 len;
	u32 seq_off;
	u8 rec[];
};

/*
 * Deferred records come from pools (pool.h), by size: most records are
 * short (a few hundred bytes), those of an exec with its arguments and
 * environment up to the BSM maximum.  Usually one record waits per process
 * that runs into a full ring, so 256 short ones (256 KiB) and 8 of the
 * maximum size (512 KiB) serve that many processes at once.  A record for
 * which neither pool has a buffer is counted as lost, as with cnt.
 */
#define DEFER_SHORT		(1024 - sizeof(struct deferred))
#define DEFER_POOL		(LXBSM_CAN_WAIT ? 256 : 0)
#define DEFER_BIG_POOL		(LXBSM_CAN_WAIT ? 8 : 0)
LXBSM_POOL_DEFINE(lxbsm_defer_pool, "deferred record", sizeof(struct deferred) + DEFER_SHORT,
		  DEFER_POOL);
LXBSM_POOL_DEFINE(lxbsm_defer_big_pool, "deferred big record",
		  sizeof(struct deferred) + LXBSM_MAX_RECORD, DEFER_BIG_POOL);

#if LXBSM_CAN_WAIT
static void deferred_free(struct deferred *d)
{
	lxbsm_pool_put(d->pool, d);
}

/*
 * task_work: runs in the process, on its way back to user space.  Queued,
 * the record held the module (later.h); running, it lets the module go,
 * still counted as pending, so that unload can tell it to give up (within
 * one 10 ms wait) and wait for it, rather than be refused for as long as
 * the ring stays full.
 */
static void deferred_write(struct callback_head *cb)
{
	struct deferred *d = container_of(cb, struct deferred, cb);

	lxbsm_later_unhold();
	while (write_stamped(d->rec, d->len, d->seq_off)) {
		if (lxbsm_later_unloading() || fatal_signal_pending(current)) {
			lxbsm_lost(LXBSM_LOST_RING_FULL);
			goto out;
		}
		schedule_timeout_killable(msecs_to_jiffies(10));
	}
	atomic64_inc(&waited);
out:
	deferred_free(d);
	lxbsm_later_done(true);
}

/* Hand the record to its process to write once there is room. */
static bool defer(struct lxbsm_rec *r)
{
	struct lxbsm_pool *pool;
	struct deferred *d;

	if (current->flags & (PF_KTHREAD | PF_EXITING) || lxbsm_later_unloading())
		return false;
	/*
	 * The consumer never waits: the room it would wait for is what only it
	 * frees.  Its record is counted as lost, and the notice says so.
	 */
	if (lxbsm_current_is_consumer())
		return false;
	pool = r->len <= DEFER_SHORT ? &lxbsm_defer_pool : &lxbsm_defer_big_pool;
	d = lxbsm_pool_get(pool);
	if (!d && pool == &lxbsm_defer_pool) {
		pool = &lxbsm_defer_big_pool;
		d = lxbsm_pool_get(pool);
	}
	if (!d)
		return false;
	d->pool = pool;
	d->len = r->len;
	d->seq_off = r->seq_off;
	memcpy(d->rec, r->buf, r->len);
	/*
	 * Queued, the record holds the module (later.h): once the module is
	 * going, nothing is deferred.
	 */
	if (lxbsm_later(&d->cb, deferred_write))
		return true;
	deferred_free(d);
	return false;
}
#else
static bool defer(struct lxbsm_rec *r)
{
	return false;
}
#endif

bool lxbsm_record_can_wait(void)
{
	return LXBSM_CAN_WAIT;
}

u64 lxbsm_record_waited(void)
{
	return atomic64_read(&waited);
}

/* Subject, return, [seq], trailer; false (counted, released) if it overflowed. */
static bool rec_close_as(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
			 u32 policy, const struct cred *cred, pid_t pid)
{
	if (r->overflow) {
		/* Budgets keep every record below the BSM maximum. */
		lxbsm_ring_lost(&lxbsm_ring, LXBSM_LOST_TOO_BIG);
		atomic64_inc(&pending_lost);
		rec_release(r);
		return false;
	}
	put_subject(r, proc, cred, pid);
	put_return(r, ret);
	if (policy & LXBSM_POLICY_SEQ) {
		u8 *c = at(r);

		r->seq_off = r->len;
		w8(&c, AUT_SEQ);
		w32(&c, 0);		/* stamped in ring order */
		done(r, c);
	}
	put_trailer(r);
	return true;
}

static bool rec_close(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
		      u32 policy)
{
	return rec_close_as(r, proc, ret, policy, current_cred(), task_tgid_nr(current));
}

/* Into the ring after any notice of losses before it; -ENOSPC if no room. */
static int rec_write(struct lxbsm_rec *r)
{
	u64 lost = atomic64_xchg(&pending_lost, 0);

	if (lost && !emit_lost_notice(lost)) {
		atomic64_add(lost, &pending_lost);
		return -ENOSPC;
	}
	return write_stamped(r->buf, r->len, r->seq_off);
}

/*
 * Finish a record of lxbsm_rec_new(), waiting up to @wait_ms for room in
 * the ring whatever the policy, while the ring has a reader (the caller
 * decides what a loss is: nothing is counted here).  0; -ENOSPC if there was no room in time or the module
 * is going; -E2BIG if it overflowed (counted as too big).  Frees @r.
 */
int lxbsm_rec_finish_wait(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
			  unsigned int wait_ms)
{
	return lxbsm_rec_finish_wait_as(r, proc, ret, wait_ms, current_cred(),
					task_tgid_nr(current));
}

/* The same for a record of another moment: its subject's @cred and @pid. */
int lxbsm_rec_finish_wait_as(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret,
			     unsigned int wait_ms, const struct cred *cred, pid_t pid)
{
	unsigned long until = jiffies + msecs_to_jiffies(wait_ms);
	int err;

	if (!rec_close_as(r, proc, ret, lxbsm_policy(), cred, pid))
		return -E2BIG;
	while ((err = rec_write(r)) == -ENOSPC) {
		/* Nobody to make room: no waiting (the daemon stopped, say). */
		if (lxbsm_later_unloading() || time_after(jiffies, until) ||
		    !lxbsm_consumer_present())
			break;
		schedule_timeout_uninterruptible(msecs_to_jiffies(5));
	}
	rec_release(r);
	return err;
}

void lxbsm_rec_finish(struct lxbsm_rec *r, const struct lxbsm_proc_snap *proc, long ret)
{
	u32 policy = lxbsm_policy();
	u64 built = 0;

	if (!rec_close(r, proc, ret, policy))
		return;
	if (r->cost_t0)
		built = local_clock();

	if (!rec_write(r))
		goto done;
	/* No room: wait for it (policy without cnt), or count the loss. */
	if (policy & LXBSM_POLICY_CNT || !defer(r))
		lxbsm_lost(LXBSM_LOST_RING_FULL);
done:
	if (r->cost_t0)
		lxbsm_cost_record(r->cost_t0, built, local_clock());
	rec_release(r);
}
