// SPDX-License-Identifier: GPL-2.0
/*
 * Is fs_struct's seq a seqlock_t holding the lock (7.x), or a
 * seqcount_spinlock_t beside a separate fs->lock (5.10 to 6.12)?
 */
#include <linux/fs_struct.h>

seqcount_t *lxbsm_probe(struct fs_struct *fs);
seqcount_t *lxbsm_probe(struct fs_struct *fs)
{
	return &fs->seq.seqcount.seqcount;
}
