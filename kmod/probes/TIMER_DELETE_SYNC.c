// SPDX-License-Identifier: GPL-2.0
/* Is a timer stopped with timer_delete_sync() (6.2; del_timer_sync() gone in 7.x)? */
#include <linux/timer.h>

int lxbsm_probe(struct timer_list *t);
int lxbsm_probe(struct timer_list *t)
{
	return timer_delete_sync(t);
}
