/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Work a handler hands to the current task (later.c): task_work, run in the
 * task's own context on its way back to user space, where it may sleep,
 * fault, allocate and take any lock.  Late connect records (ev_net.c),
 * records that waited for ring space (record.c), file hashing and kill mode
 * (xctl.c) all go this way, and so all share one rule for unloading:
 *
 * A queued task_work cannot be taken back (the kernel exports no way), and
 * its task may block in the kernel before it gets to it for as long as
 * anyone likes.  So queued work holds a module reference: rmmod is refused
 * ("in use") meanwhile and can be retried.  The work drops it when done
 * (lxbsm_later_done()), or first thing if it may wait long itself (it must
 * then give up once lxbsm_later_unloading() says so).  Unload, after the
 * hooks are gone, calls lxbsm_later_quiesce(): it waits until no work is
 * pending, then for a Tasks RCU grace period (one may still be returning
 * from module code), and that only if any work was queued since load: a
 * grace period takes seconds under emulation.
 */
#ifndef LXBSM_LATER_H
#define LXBSM_LATER_H

#include <linux/types.h>

#include "compat.h"

struct callback_head;

#ifdef LXBSM_HAVE_TASK_WORK
/*
 * Any context: queue @fn to run in current with @cb (in the caller's object)
 * and take a module reference for it.  False if it cannot be (a kernel
 * thread, an exiting task, the module going): the caller still owns @cb.
 */
bool lxbsm_later(struct callback_head *cb, void (*fn)(struct callback_head *));
/*
 * The same for an exiting task too: while its exit runs its task_work
 * (exit_task_work()), work added is run in that same pass; after it, the
 * kernel refuses it (false).  Such work must not need current->fs (gone).
 */
bool lxbsm_later_exiting(struct callback_head *cb, void (*fn)(struct callback_head *));
/* In the work: the module reference goes now (the work will wait long). */
void lxbsm_later_unhold(void);
/* In the work, last: done (and the reference goes, unless @unheld). */
void lxbsm_later_done(bool unheld);
/* In work that unheld the module: unload waits for it; give up soon. */
bool lxbsm_later_unloading(void);
#else
static inline bool lxbsm_later(struct callback_head *cb, void (*fn)(struct callback_head *))
{
	return false;
}

static inline bool lxbsm_later_exiting(struct callback_head *cb,
				       void (*fn)(struct callback_head *))
{
	return false;
}

static inline bool lxbsm_later_unloading(void)
{
	return true;
}
#endif

/* At unload (and after a failed load), once no handler can run. */
void lxbsm_later_quiesce(void);

#endif /* LXBSM_LATER_H */
