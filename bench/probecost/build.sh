#!/usr/bin/env bash
# Build bench/probecost/probecost.ko (a measuring aid: bench/probe_cost.py) for
# kernel KVER into build/probecost/KVER/, with W=1, in the kernel's build root
# when it is not the host's (as scripts/build-module.sh does).
# Usage: build.sh KVER
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
kver=${1:?usage: build.sh KVER}
kdir=/lib/modules/$kver/build
out=$here/build/probecost/$kver

if [ ! -f "$kdir/Makefile" ] && [ -z "${LXBSM_IN_ROOT:-}" ]; then
	cache=$("$here/scripts/kernels.sh" --cache)
	for root in $("$here/scripts/kernels.sh" --table | awk '$5 != "host" {print $5}' | sort -u); do
		if [ -f "$cache/roots/$root/usr/src/linux-headers-$kver/Makefile" ]; then
			exec "$here/scripts/buildroot.sh" --run "$root" "$here/bench/probecost/build.sh" "$kver"
		fi
	done
fi
if [ ! -f "$kdir/Makefile" ]; then
	echo "probecost: no kernel headers for $kver at $kdir (make deps installs them)" >&2
	exit 1
fi
mkdir -p "$out"
cp "$here/bench/probecost/probecost.c" "$here/bench/probecost/Kbuild" "$out/"
# With fprobes if the kernel has them and their handlers compile as written
# (CONFIG_FPROBE: not in Debian's 5.10 and 6.1; another API from 6.14 on);
# else kprobes only.
build() { # extra cflags
	env -u MAKEFLAGS -u MFLAGS make -C "$kdir" M="$out" W=1 PROBECOST_CFLAGS="$1" modules \
		>"$out/build.log" 2>&1
}
if grep -q '^CONFIG_FPROBE=y' "$kdir/.config" && build -DPROBECOST_FPROBE &&
	! grep -q 'warning:' "$out/build.log"; then
	echo "  PROBES  kprobe, fprobe"
else
	echo "  PROBES  kprobe (no fprobe here)"
	build "" || {
		cat "$out/build.log" >&2
		exit 1
	}
fi
if grep -q 'warning:' "$out/build.log"; then
	grep 'warning:' "$out/build.log" >&2
	exit 1
fi
echo "  OK      $out/probecost.ko"
