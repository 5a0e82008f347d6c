/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Object pools for handler context (pool.c).
 *
 * A hook handler (kprobe, kretprobe, tracepoint) runs with preemption or
 * interrupts disabled.  On PREEMPT_RT the slab allocator takes sleeping
 * locks there, even for GFP_ATOMIC, and so does kfree(): a handler must not
 * call it at all.  It takes fixed-size objects from a pool instead and gives
 * them back to it; both are a few instructions under a raw spinlock.  The
 * pool is filled from process context: at load, and by a work item queued
 * when it falls below its low watermark (queue_work() is safe in any
 * context, its locks are raw), which also frees what is given back beyond
 * the pool's capacity.  An empty pool is a failure the caller counts and
 * turns into a visible loss, on every kernel: one code path.
 *
 * A new site: define the pool next to its object with LXBSM_POOL_DEFINE(),
 * list it in lxbsm_pools[] (pool.c), and use lxbsm_pool_get() and
 * lxbsm_pool_put() where it used kmalloc(GFP_ATOMIC) and kfree().
 */
#ifndef LXBSM_POOL_H
#define LXBSM_POOL_H

#include <linux/atomic.h>
#include <linux/build_bug.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/stddef.h>
#include <linux/types.h>
#include <linux/workqueue.h>

struct lxbsm_pool {
	const char *name;
	size_t size;			/* of one object */
	unsigned int capacity;		/* objects kept ready */
	unsigned int low;		/* refill below this many */
	raw_spinlock_t lock;		/* the fields below */
	void *free;			/* free objects, linked through their first word */
	unsigned int nr;		/* ... how many */
	bool dying;			/* no more refills: unload */
	struct work_struct work;	/* refill and trim */
	atomic64_t empty;		/* gets that found it empty */
};

void lxbsm_pool_work(struct work_struct *work);

/*
 * A pool of @cap objects of @sz bytes (at least a pointer), refilled once
 * fewer than three quarters of them are left (->low, set at load: the
 * capacity may be a module parameter).
 */
#define LXBSM_POOL_DEFINE(var, nm, sz, cap)				\
	struct lxbsm_pool var = {					\
		.name = nm,						\
		.size = (sz) + BUILD_BUG_ON_ZERO((sz) < sizeof(void *)), \
		.capacity = cap,					\
		.lock = __RAW_SPIN_LOCK_UNLOCKED(var.lock),		\
		.work = __WORK_INITIALIZER(var.work, lxbsm_pool_work),	\
		.empty = ATOMIC64_INIT(0),				\
	}

/* Any context.  NULL (counted in ->empty) if the pool is empty. */
void *lxbsm_pool_get(struct lxbsm_pool *pool);
/* Any context: @obj (from lxbsm_pool_get() of this pool) goes back. */
void lxbsm_pool_put(struct lxbsm_pool *pool, void *obj);

/*
 * Objects of a pool that calls in flight hold, listed through a list_head
 * in each, so that unloading takes back those whose call never returns to
 * the module (it was blocked across the unload).  Any context.
 */
struct lxbsm_held {
	struct lxbsm_pool *pool;	/* where the objects go back */
	size_t node;			/* offset of the list_head in an object */
	raw_spinlock_t lock;		/* the list */
	struct list_head list;
};

#define LXBSM_HELD_DEFINE(var, pl, type, member)			\
	struct lxbsm_held var = {					\
		.pool = &(pl),						\
		.node = offsetof(type, member),				\
		.lock = __RAW_SPIN_LOCK_UNLOCKED(var.lock),		\
		.list = LIST_HEAD_INIT(var.list),			\
	}

void lxbsm_held_add(struct lxbsm_held *held, struct list_head *node);
/* @node's object is no longer held: the caller gives it back or keeps it. */
void lxbsm_held_del(struct lxbsm_held *held, struct list_head *node);
/* Unload, once no handler runs: every object still held goes back. */
void lxbsm_held_release(struct lxbsm_held *held);

/* Every pool of lxbsm_pools[]: fill at load, before any hook is attached. */
int lxbsm_pools_init(void);
/* ... and free at unload, once every object is back (nothing can get one). */
void lxbsm_pools_exit(void);

/* The pools (defined by their users). */
extern struct lxbsm_pool lxbsm_proc_pool;	/* proc.c: process table entries */
extern struct lxbsm_pool lxbsm_long_path_pool;	/* ev_exec.c: exec paths over 4 KiB */
extern struct lxbsm_pool lxbsm_hash_job_pool;	/* xctl.c: files to hash in task_work */
extern struct lxbsm_pool lxbsm_defer_pool;	/* record.c: deferred records */
extern struct lxbsm_pool lxbsm_defer_big_pool;	/* ... too big for the above */
extern struct lxbsm_pool lxbsm_late_connect_pool; /* ev_net.c: connects the kretprobe missed */
extern struct lxbsm_pool lxbsm_capture_pool;	/* ev_sys.c: files table-driven calls resolved */
extern struct lxbsm_pool lxbsm_pj_pool;	/* protect.c: changes to protected files */
extern struct lxbsm_pool lxbsm_pj_long_pool;	/* ... path operations */

#endif /* LXBSM_POOL_H */
