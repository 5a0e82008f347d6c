// SPDX-License-Identifier: GPL-2.0
/*
 * Do kretprobes run on rethook, each task keeping its hooked returns in
 * current->rethooks (x86_64 since 5.19), or on the kernel's private hash of
 * instances (5.10)?
 */
#include <linux/kprobes.h>
#include <linux/rethook.h>
#include <linux/sched.h>

struct rethook *lxbsm_probe(struct kretprobe *krp);
struct rethook *lxbsm_probe(struct kretprobe *krp)
{
	return current->rethooks.first ? krp->rh : NULL;
}
