// SPDX-License-Identifier: GPL-2.0
/*
 * xc_interp: an ordinary program whose PT_INTERP names /tmp/lxbsm-xc-interp
 * (see the Makefile): what runs first is that file, not this one.
 */
int main(void)
{
	return 3;
}
