// SPDX-License-Identifier: GPL-2.0
/*
 * Work handlers hand to the current task: see later.h.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>

#include "later.h"

#ifdef LXBSM_HAVE_TASK_WORK
#include <linux/task_work.h>

/* Queued or running work: unload waits for none to be left. */
static atomic_t pending = ATOMIC_INIT(0);
/* Was any queued since load?  If not, unload skips the grace period. */
static bool used;
/* Unload has begun: no more work is queued, waiting work gives up. */
static bool unloading;

static bool later(struct callback_head *cb, void (*fn)(struct callback_head *))
{
	if (!try_module_get(THIS_MODULE))
		return false;
	init_task_work(cb, fn);
	WRITE_ONCE(used, true);
	atomic_inc(&pending);	/* before the reference can go */
	if (task_work_add(current, cb, TWA_RESUME)) {
		atomic_dec(&pending);
		module_put(THIS_MODULE);
		return false;
	}
	return true;
}
NOKPROBE_SYMBOL(later);

bool lxbsm_later(struct callback_head *cb, void (*fn)(struct callback_head *))
{
	if (lxbsm_kthread() || current->flags & PF_EXITING || READ_ONCE(unloading))
		return false;
	return later(cb, fn);
}
NOKPROBE_SYMBOL(lxbsm_later);

bool lxbsm_later_exiting(struct callback_head *cb, void (*fn)(struct callback_head *))
{
	if (lxbsm_kthread() || READ_ONCE(unloading))
		return false;
	return later(cb, fn);
}
NOKPROBE_SYMBOL(lxbsm_later_exiting);

void lxbsm_later_unhold(void)
{
	module_put(THIS_MODULE);
}

void lxbsm_later_done(bool unheld)
{
	atomic_dec(&pending);
	/* Last: the module may go from here on (the grace period sees to the return). */
	if (!unheld)
		module_put(THIS_MODULE);
}

bool lxbsm_later_unloading(void)
{
	return READ_ONCE(unloading);
}

/*
 * Queued work holds the module, so none is left at a normal unload but
 * work that let its reference go (and now sees "unloading" and gives up);
 * after a failed load, where the loader does not look at references, any.
 */
void lxbsm_later_quiesce(void)
{
	WRITE_ONCE(unloading, true);
	while (atomic_read(&pending))
		msleep(20);
	if (READ_ONCE(used))
		synchronize_rcu_tasks();
}
#else
void lxbsm_later_quiesce(void)
{
}
#endif
