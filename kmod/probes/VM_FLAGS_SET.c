// SPDX-License-Identifier: GPL-2.0
/* Does this kernel have vm_flags_set()/vm_flags_clear()? */
#include <linux/mm.h>

void lxbsm_probe(struct vm_area_struct *vma);
void lxbsm_probe(struct vm_area_struct *vma)
{
	vm_flags_clear(vma, VM_MAYWRITE);
}
