/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Protected trees: the change journal's capture (protect.c).
 */
#ifndef LXBSM_PROTECT_H
#define LXBSM_PROTECT_H

#include <linux/compiler.h>
#include <linux/types.h>

/* Some tree is protected: the capture hooks are wanted (hooks.c). */
bool lxbsm_protect_active(void);
/* LXBSM_IOC_SET_PROTECT, LXBSM_IOC_PROTECT_STATUS */
long lxbsm_protect_set(void __user *arg);
long lxbsm_protect_status(void __user *arg);
/* At unload (and after a failed load), once no handler runs and no work is left. */
void lxbsm_protect_exit(void);

#endif /* LXBSM_PROTECT_H */
