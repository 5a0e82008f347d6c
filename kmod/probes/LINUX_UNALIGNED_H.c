// SPDX-License-Identifier: GPL-2.0
/* Is the unaligned-access header linux/unaligned.h (6.12) or asm/unaligned.h? */
#include <linux/unaligned.h>

u32 lxbsm_probe(const u8 *p);
u32 lxbsm_probe(const u8 *p)
{
	return get_unaligned_be32(p);
}
