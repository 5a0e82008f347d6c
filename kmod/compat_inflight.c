// SPDX-License-Identifier: GPL-2.0
/*
 * lxbsm_inflight() on kernels whose kretprobes do not run on rethook (5.10):
 * there the kernel keeps the instances in flight in a hash private to
 * kernel/kprobes.c, so lxbsm keeps its own table of the calls it will be
 * asked about, those of the hooks marked .inflight (hooks.c).
 *
 * The table is a fixed array of buckets, one chosen by the task, each of
 * INFLIGHT_WAYS slots under a raw spinlock (every handler runs in atomic
 * context).  A tracked hook's entry handler adds the call once it keeps it
 * (returns 0), its return handler removes it; a thread that dies in such a
 * call (which never returns) loses its slots at exit.  Nothing is allocated
 * and nothing waits.  A call that finds its bucket full is given up and
 * counted as a miss of its hook (hook_missed(), hooks.c), as a call the
 * kernel found no instance for: a lost record, so the trail shows the gap,
 * unless another hook takes it over (a connect, recorded late: ev_net.c).
 * A lookup checks that the instance still belongs to current and to a hook
 * of ours that is on, so a slot that outlived its call would never hand out
 * another call's data.
 *
 * A tracked hook's entry handler may leave nothing to undo but its data:
 * when the table is full the call is dropped after it ran, and its return
 * handler never runs.
 *
 * Sizing: every connect, bind and open in flight is tracked, and a user
 * may hold ACTIVE_SLEEPY (1024) connects and as many opens blocked at
 * once; 512 buckets of 16 keep such a flood (about 4 calls a bucket) clear
 * of full buckets.  136 KiB, on these kernels only.
 */
#include <linux/hash.h>
#include <linux/kprobes.h>
#include <linux/sched.h>
#include <linux/spinlock.h>

#include "compat.h"
#include "hooks.h"

#ifndef LXBSM_HAVE_KRETPROBE_RETHOOK

#define INFLIGHT_BITS	9
#define INFLIGHT_WAYS	16

struct inflight_slot {
	struct task_struct *task;		/* NULL: free */
	struct kretprobe_instance *ri;
};

struct inflight_bucket {
	raw_spinlock_t lock;
	unsigned int used;			/* slots taken; read without the lock */
	struct inflight_slot slot[INFLIGHT_WAYS];
};

static struct inflight_bucket inflight[1 << INFLIGHT_BITS];

static struct inflight_bucket *bucket_of(struct task_struct *p)
{
	return &inflight[hash_ptr(p, INFLIGHT_BITS)];
}

static bool slot_add(struct kretprobe_instance *ri)
{
	struct inflight_bucket *b = bucket_of(current);
	unsigned long flags;
	bool added = false;
	int i;

	raw_spin_lock_irqsave(&b->lock, flags);
	for (i = 0; i < INFLIGHT_WAYS; i++) {
		if (!b->slot[i].task) {
			b->slot[i].task = current;
			b->slot[i].ri = ri;
			WRITE_ONCE(b->used, b->used + 1);
			added = true;
			break;
		}
	}
	raw_spin_unlock_irqrestore(&b->lock, flags);
	return added;
}
NOKPROBE_SYMBOL(slot_add);

static void slot_del(struct kretprobe_instance *ri)
{
	struct inflight_bucket *b = bucket_of(current);
	unsigned long flags;
	int i;

	raw_spin_lock_irqsave(&b->lock, flags);
	for (i = 0; i < INFLIGHT_WAYS; i++) {
		if (b->slot[i].task == current && b->slot[i].ri == ri) {
			b->slot[i].task = NULL;
			b->slot[i].ri = NULL;
			WRITE_ONCE(b->used, b->used - 1);
			break;
		}
	}
	raw_spin_unlock_irqrestore(&b->lock, flags);
}
NOKPROBE_SYMBOL(slot_del);

static int tracked_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct lxbsm_hook *h = lxbsm_kret_hook(ri);

	if (h->entry_run(ri, regs))
		return 1;
	if (slot_add(ri))
		return 0;
	atomic64_inc(&h->dropped);
	return 1;
}
NOKPROBE_SYMBOL(tracked_entry);

static int tracked_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct lxbsm_hook *h = lxbsm_kret_hook(ri);
	int ret;

	ret = h->ret_run(ri, regs);
	slot_del(ri);
	return ret;
}
NOKPROBE_SYMBOL(tracked_ret);

void lxbsm_inflight_track(struct lxbsm_hook *h)
{
	h->krp.entry_handler = tracked_entry;
	h->krp.handler = tracked_ret;
}

/*
 * Only current adds its own calls, so if it has one, it sees its bucket
 * in use without the lock.
 */
bool lxbsm_inflight_any(void)
{
	return READ_ONCE(bucket_of(current)->used);
}
NOKPROBE_SYMBOL(lxbsm_inflight_any);

/*
 * Only current adds and removes its own calls, and only current's handlers
 * write their data, so current may use the data after the lock is dropped.
 */
void *lxbsm_inflight(kretprobe_handler_t entry)
{
	struct inflight_bucket *b = bucket_of(current);
	struct kretprobe_instance *found = NULL;
	unsigned long flags;
	int i;

	if (!READ_ONCE(b->used))
		return NULL;
	raw_spin_lock_irqsave(&b->lock, flags);
	for (i = 0; i < INFLIGHT_WAYS; i++) {
		struct kretprobe_instance *ri = b->slot[i].ri;
		struct kretprobe *krp;
		struct lxbsm_hook *h;

		if (b->slot[i].task != current || ri->task != current)
			continue;
		krp = lxbsm_ri_kretprobe(ri);
		if (!krp)
			continue;
		h = container_of(krp, struct lxbsm_hook, krp);
		if (h->entry == entry && READ_ONCE(h->state) == LXBSM_HOOK_ON) {
			found = ri;
			break;
		}
	}
	raw_spin_unlock_irqrestore(&b->lock, flags);
	return found ? found->data : NULL;
}
NOKPROBE_SYMBOL(lxbsm_inflight);

void lxbsm_inflight_forget(struct task_struct *p)
{
	struct inflight_bucket *b = bucket_of(p);
	unsigned long flags;
	int i;

	if (!READ_ONCE(b->used))
		return;
	raw_spin_lock_irqsave(&b->lock, flags);
	for (i = 0; i < INFLIGHT_WAYS; i++) {
		if (b->slot[i].task == p) {
			b->slot[i].task = NULL;
			b->slot[i].ri = NULL;
			WRITE_ONCE(b->used, b->used - 1);
		}
	}
	raw_spin_unlock_irqrestore(&b->lock, flags);
}
NOKPROBE_SYMBOL(lxbsm_inflight_forget);

void lxbsm_inflight_reset(void)
{
	int i;

	memset(inflight, 0, sizeof(inflight));
	for (i = 0; i < ARRAY_SIZE(inflight); i++)
		raw_spin_lock_init(&inflight[i].lock);
}

#endif /* !LXBSM_HAVE_KRETPROBE_RETHOOK */
