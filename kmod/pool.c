// SPDX-License-Identifier: GPL-2.0
/*
 * Object pools for handler context: see pool.h.
 *
 * Each pool is a stack of free objects, linked through their first word,
 * under a raw spinlock taken with interrupts off (a pool may be used from an
 * RCU callback, which is softirq context on a kernel without PREEMPT_RT).
 * Only the pool's work item, in process context, calls the allocator: it
 * brings the pool back to its capacity, allocating what is missing and
 * freeing what was given back beyond it.  A burst that empties a pool
 * fails gets until the work has run; the callers count those failures.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "pool.h"

static struct lxbsm_pool *const lxbsm_pools[] = {
	&lxbsm_proc_pool,
	&lxbsm_long_path_pool,
	&lxbsm_hash_job_pool,
	&lxbsm_defer_pool,
	&lxbsm_defer_big_pool,
	&lxbsm_late_connect_pool,
	&lxbsm_capture_pool,
	&lxbsm_pj_pool,
	&lxbsm_pj_long_pool,
};

static void push(struct lxbsm_pool *pool, void *obj)
{
	*(void **)obj = pool->free;
	pool->free = obj;
	pool->nr++;
}

static void *pop(struct lxbsm_pool *pool)
{
	void *obj = pool->free;

	if (obj) {
		pool->free = *(void **)obj;
		pool->nr--;
	}
	return obj;
}

void *lxbsm_pool_get(struct lxbsm_pool *pool)
{
	unsigned long flags;
	bool refill;
	void *obj;

	raw_spin_lock_irqsave(&pool->lock, flags);
	obj = pop(pool);
	refill = pool->nr < pool->low && !pool->dying;
	raw_spin_unlock_irqrestore(&pool->lock, flags);
	if (refill)
		queue_work(system_unbound_wq, &pool->work);
	if (!obj)
		atomic64_inc(&pool->empty);
	return obj;
}

void lxbsm_pool_put(struct lxbsm_pool *pool, void *obj)
{
	unsigned long flags;
	bool trim;

	if (!obj)
		return;
	raw_spin_lock_irqsave(&pool->lock, flags);
	push(pool, obj);
	trim = pool->nr > pool->capacity && !pool->dying;
	raw_spin_unlock_irqrestore(&pool->lock, flags);
	if (trim)
		queue_work(system_unbound_wq, &pool->work);
}

void lxbsm_held_add(struct lxbsm_held *held, struct list_head *node)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&held->lock, flags);
	list_add(node, &held->list);
	raw_spin_unlock_irqrestore(&held->lock, flags);
}

void lxbsm_held_del(struct lxbsm_held *held, struct list_head *node)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&held->lock, flags);
	list_del(node);
	raw_spin_unlock_irqrestore(&held->lock, flags);
}

void lxbsm_held_release(struct lxbsm_held *held)
{
	struct list_head *pos, *tmp;
	unsigned long flags;
	LIST_HEAD(gone);

	raw_spin_lock_irqsave(&held->lock, flags);
	list_splice_init(&held->list, &gone);
	raw_spin_unlock_irqrestore(&held->lock, flags);
	list_for_each_safe(pos, tmp, &gone)
		lxbsm_pool_put(held->pool, (char *)pos - held->node);
}

/* Process context: bring @pool to its capacity.  False if out of memory. */
static bool balance(struct lxbsm_pool *pool)
{
	unsigned long flags;
	void *obj;

	for (;;) {
		raw_spin_lock_irqsave(&pool->lock, flags);
		if (pool->nr > pool->capacity) {
			obj = pop(pool);
			raw_spin_unlock_irqrestore(&pool->lock, flags);
			kvfree(obj);
		} else if (pool->nr < pool->capacity) {
			raw_spin_unlock_irqrestore(&pool->lock, flags);
			obj = kvmalloc(pool->size, GFP_KERNEL | __GFP_NOWARN);
			if (!obj)
				return false;
			raw_spin_lock_irqsave(&pool->lock, flags);
			push(pool, obj);
			raw_spin_unlock_irqrestore(&pool->lock, flags);
		} else {
			raw_spin_unlock_irqrestore(&pool->lock, flags);
			return true;
		}
		cond_resched();
	}
}

void lxbsm_pool_work(struct work_struct *work)
{
	balance(container_of(work, struct lxbsm_pool, work));
}

int lxbsm_pools_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(lxbsm_pools); i++) {
		struct lxbsm_pool *pool = lxbsm_pools[i];

		pool->low = pool->capacity - pool->capacity / 4;
		pool->dying = false;
		atomic64_set(&pool->empty, 0);
		if (!balance(pool)) {
			pr_err("cannot fill the %s pool (%u of %zu bytes)\n", pool->name,
			       pool->capacity, pool->size);
			lxbsm_pools_exit();
			return -ENOMEM;
		}
	}
	return 0;
}

void lxbsm_pools_exit(void)
{
	unsigned long flags;
	void *obj;
	int i;

	for (i = 0; i < ARRAY_SIZE(lxbsm_pools); i++) {
		struct lxbsm_pool *pool = lxbsm_pools[i];

		raw_spin_lock_irqsave(&pool->lock, flags);
		pool->dying = true;
		raw_spin_unlock_irqrestore(&pool->lock, flags);
		cancel_work_sync(&pool->work);
		while ((obj = pop(pool)))
			kvfree(obj);
		if (atomic64_read(&pool->empty))
			pr_info("the %s pool was empty %lld times\n", pool->name,
				(long long)atomic64_read(&pool->empty));
	}
}
