/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lxbsm compat: every difference between the supported kernels lives here.
 *
 * Differences are detected by build-time feature probes (kmod/probes/NAME.c,
 * compiled against the target's headers by kmod/probe-features.sh), not by
 * version numbers: Debian's stable kernels backport features, so a version
 * number would lie.  The probe results arrive as LXBSM_HAVE_* macros in the
 * generated lxbsm_probes.h.
 */
#ifndef LXBSM_COMPAT_H
#define LXBSM_COMPAT_H

#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/kprobes.h>
#include <linux/mm.h>
#include <linux/net.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/timer.h>

#include "lxbsm_probes.h"

#ifdef LXBSM_HAVE_KRETPROBE_RETHOOK
#include <linux/rethook.h>
#endif

/* asm/unaligned.h moved to linux/unaligned.h (6.12). */
#ifdef LXBSM_HAVE_LINUX_UNALIGNED_H
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/*
 * Work queued to a task with task_work_add() (exported) whose callback is
 * module code: at unload, synchronize_rcu_tasks() waits out a callback
 * still returning.  That is exported where Tasks RCU is built; where it is
 * not (a kernel without preemption: 5.10's), the header makes it
 * synchronize_rcu(), which there waits out any code that cannot sleep.
 */
#if defined(LXBSM_HAVE_EXPORT_TASK_WORK_ADD) && \
	(defined(LXBSM_HAVE_EXPORT_SYNCHRONIZE_RCU_TASKS) || defined(synchronize_rcu_tasks))
#define LXBSM_HAVE_TASK_WORK 1
#endif

/*
 * Is current a kernel thread, rather than a program being started?  A
 * usermode helper (modprobe, a core dump pipe) is forked by a kernel worker.
 * 6.1's user_mode_thread() forks it without PF_KTHREAD; 5.10's
 * kernel_thread() keeps the worker's flag until the helper's exec succeeds.
 * No test of a version: while a task execs (in_execve) it is a program being
 * started, recorded and under exec control as any other.  (kernel_execve()'s
 * entry, before in_execve is set, is told apart by its hook: ev_exec.c.)
 */
static inline bool lxbsm_kthread(void)
{
	return current->flags & PF_KTHREAD && !current->in_execve;
}

/* The SHA-2 library's header was crypto/sha.h until 5.11. */
#ifdef LXBSM_HAVE_CRYPTO_SHA2_H
#include <crypto/sha2.h>
#else
#include <crypto/sha.h>
#endif

/* vm_flags became read-only with vm_flags_set/clear (6.3; not in 6.1). */
#ifdef LXBSM_HAVE_VM_FLAGS_SET
static inline void lxbsm_vm_flags_clear(struct vm_area_struct *vma, vm_flags_t flags)
{
	vm_flags_clear(vma, flags);
}
#else
static inline void lxbsm_vm_flags_clear(struct vm_area_struct *vma, vm_flags_t flags)
{
	vma->vm_flags &= ~flags;
}
#endif

/* An inode's ctime: inode_get_ctime() from 6.6, the i_ctime field before. */
static inline struct timespec64 lxbsm_inode_ctime(const struct inode *inode)
{
#ifdef LXBSM_HAVE_INODE_GET_CTIME
	return inode_get_ctime(inode);
#else
	return inode->i_ctime;
#endif
}

/* The SHA-256 library hashes into a struct sha256_ctx from 6.17, a struct sha256_state before. */
struct lxbsm_sha256 {
#ifdef LXBSM_HAVE_SHA256_CTX
	struct sha256_ctx ctx;
#else
	struct sha256_state ctx;
#endif
};

static inline void lxbsm_sha256_init(struct lxbsm_sha256 *h)
{
	sha256_init(&h->ctx);
}

static inline void lxbsm_sha256_update(struct lxbsm_sha256 *h, const u8 *data, unsigned int len)
{
	sha256_update(&h->ctx, data, len);
}

static inline void lxbsm_sha256_final(struct lxbsm_sha256 *h, u8 *out)
{
	sha256_final(&h->ctx, out);
}

/* timer_delete_sync() from 6.2; del_timer_sync(), its old name, is gone in 7.x. */
static inline int lxbsm_timer_delete_sync(struct timer_list *t)
{
#ifdef LXBSM_HAVE_TIMER_DELETE_SYNC
	return timer_delete_sync(t);
#else
	return del_timer_sync(t);
#endif
}

/*
 * The plain seqcount inside fs_struct's seq: a seqcount_spinlock_t beside
 * fs->lock until 6.x, a seqlock_t holding the lock in 7.x.
 */
static inline seqcount_t *lxbsm_fs_seqcount(struct fs_struct *fs)
{
#ifdef LXBSM_HAVE_FS_STRUCT_SEQLOCK
	return &fs->seq.seqcount.seqcount;
#else
	return &fs->seq.seqcount;
#endif
}

/*
 * do_filp_open()'s third argument is fs/internal.h's struct open_flags,
 * which is not in any public header.  Its first member has been the open(2)
 * flags (int open_flag) in every kernel this module supports (6.1, 6.12).
 */
static inline int lxbsm_open_flags(unsigned long open_flags_ptr)
{
	return *(const int *)open_flags_ptr;
}

/* The socket of a file, or NULL: sock_from_file() lost its error pointer in 5.11. */
static inline struct socket *lxbsm_sock_from_file(struct file *f)
{
#ifdef LXBSM_HAVE_SOCK_FROM_FILE_1ARG
	return sock_from_file(f);
#else
	int err;

	return sock_from_file(f, &err);
#endif
}

/* The kretprobe an instance belongs to: get_kretprobe() from 5.11, ri->rp before. */
static inline struct kretprobe *lxbsm_ri_kretprobe(struct kretprobe_instance *ri)
{
#ifdef LXBSM_HAVE_GET_KRETPROBE
	return get_kretprobe(ri);
#else
	return ri->rp;
#endif
}

/*
 * The calls in flight through the kretprobes a kprobe looks up
 * (lxbsm_inflight(), hooks.h).  With kretprobes on rethook (5.19 on) each
 * task lists its own hooked returns in current->rethooks, and hooks.c walks
 * that list.  Before (5.10), the kernel keeps the instances in a hash of its
 * own, so lxbsm keeps a table of the calls of the hooks marked .inflight
 * (compat_inflight.c): lxbsm_inflight_track() makes a hook's handlers add
 * and remove its calls.
 */
struct lxbsm_hook;

#ifdef LXBSM_HAVE_KRETPROBE_RETHOOK
static inline void lxbsm_inflight_track(struct lxbsm_hook *h)
{
}

/* Might current have a call in flight through a kretprobe?  (Cheap.) */
static inline bool lxbsm_inflight_any(void)
{
	return current->rethooks.first;
}

static inline void lxbsm_inflight_forget(struct task_struct *p)
{
}

static inline void lxbsm_inflight_reset(void)
{
}
#else
void lxbsm_inflight_track(struct lxbsm_hook *h);
bool lxbsm_inflight_any(void);
/* @p (current) exits: a call of its still in the table never returns. */
void lxbsm_inflight_forget(struct task_struct *p);
/* Empty the table: at load, and at unload once no handler runs. */
void lxbsm_inflight_reset(void);
#endif

#endif /* LXBSM_COMPAT_H */
