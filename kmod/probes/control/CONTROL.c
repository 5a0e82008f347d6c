// SPDX-License-Identifier: GPL-2.0
/*
 * The control probe: uses nothing that differs between kernels, so it
 * compiles wherever the headers and the compiler work.  If it does not, no
 * other probe's answer means anything (probe-features.sh stops there).
 */
#include <linux/module.h>

int lxbsm_probe(int x);
int lxbsm_probe(int x)
{
	return x + 1;
}
