// SPDX-License-Identifier: GPL-2.0
/* Is an instance's kretprobe get_kretprobe(ri) (5.11) or ri->rp (5.10)? */
#include <linux/kprobes.h>

struct kretprobe *lxbsm_probe(struct kretprobe_instance *ri);
struct kretprobe *lxbsm_probe(struct kretprobe_instance *ri)
{
	return get_kretprobe(ri);
}
