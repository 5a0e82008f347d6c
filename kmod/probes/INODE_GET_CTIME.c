// SPDX-License-Identifier: GPL-2.0
/* Is an inode's ctime read with inode_get_ctime() (6.6) or from i_ctime (6.1)? */
#include <linux/fs.h>

struct timespec64 lxbsm_probe(const struct inode *inode);
struct timespec64 lxbsm_probe(const struct inode *inode)
{
	return inode_get_ctime(inode);
}
