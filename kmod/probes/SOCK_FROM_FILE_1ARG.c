// SPDX-License-Identifier: GPL-2.0
/* Does sock_from_file() take the file alone (5.11), or an error pointer too? */
#include <linux/net.h>

struct socket *lxbsm_probe(struct file *f);
struct socket *lxbsm_probe(struct file *f)
{
	return sock_from_file(f);
}
