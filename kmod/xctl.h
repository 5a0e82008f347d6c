/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Exec control (xctl.c): rules matched when a file is about to run.
 */
#ifndef LXBSM_XCTL_H
#define LXBSM_XCTL_H

#include <linux/fs.h>

#include "include/uapi/lxbsm.h"

struct attribute_group;
struct pid;

/* What a matching deny rule said, for the audit record. */
struct lxbsm_xc_verdict {
	u32 mode;			/* enum lxbsm_xc_mode in force */
	const char *path;		/* the file's path in the caller's buffer, or NULL */
	bool need_hash;			/* no verdict until the file's sha256 is known */
	char text[64 + LXBSM_XC_PATH_LEN];	/* the text token */
};

/* The thread group that holds the ring (NULL: none; a reference is taken over). */
void lxbsm_xc_set_consumer(struct pid *pid);
/* Is current in that thread group?  (Any context; RCU.) */
bool lxbsm_current_is_consumer(void);
bool lxbsm_consumer_present(void);

/* The misc device's sysfs attributes: exec_control/{digests,hashed,evicted,not_cached}. */
extern const struct attribute_group *lxbsm_xc_groups[];

bool lxbsm_xc_active(void);
/*
 * Does a deny rule refuse @file?  @buf (@len bytes) holds its path if a rule
 * needs one (v->path points into it); with no buffer, path rules do not
 * match and the others still apply.
 */
bool lxbsm_xc_check(const struct file *file, char *buf, int len, struct lxbsm_xc_verdict *v);
long lxbsm_xc_set(const struct lxbsm_xc_config __user *ureq);
long lxbsm_xc_get(struct lxbsm_xc_config __user *ureq);
long lxbsm_xc_file_id(struct lxbsm_file_id __user *ureq);
void lxbsm_xc_exit(void);
/* Hash @file in current's context before it returns to user space. */
void lxbsm_xc_hash_later(struct file *file, bool exec);
/* From a handler: SIGKILL to current before it returns to user space. */
void lxbsm_xc_kill_current(void);

#endif /* LXBSM_XCTL_H */
