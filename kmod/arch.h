/* SPDX-License-Identifier: GPL-2.0 */
/* The architecture's system call names and numbers (arch/<arch>.h). */
#ifndef LXBSM_ARCH_H
#define LXBSM_ARCH_H

#if defined(CONFIG_X86_64)
#include "arch/x86_64.h"
#else
#error "lxbsm: no system call table for this architecture (see kmod/arch/x86_64.h)"
#endif

#endif /* LXBSM_ARCH_H */
