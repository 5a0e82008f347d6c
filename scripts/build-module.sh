#!/usr/bin/env bash
# Build kmod/lxbsm.ko for one kernel: probe its headers, compile with W=1,
# fail on any compiler warning, and keep a copy in build/<version>/lxbsm.ko.
# Usage: build-module.sh KVER
# Environment: LXBSM_SRC (tree holding Kbuild and kmod/; default this repo),
# LXBSM_OUT (default build/<KVER>), LXBSM_EXTRA_CFLAGS (extra -D flags).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
kver=${1:?usage: build-module.sh KVER}
src=${LXBSM_SRC:-$here}
# Absolute, here and in a build root: kbuild runs in the kernel's tree (and a
# build root elsewhere), where a relative path would name another place.
out=$(realpath -m -- "${LXBSM_OUT:-$here/build/$kver}")
export LXBSM_OUT=$out
extra=${LXBSM_EXTRA_CFLAGS:-}
kdir=/lib/modules/$kver/build

# A kernel of another suite is built in that suite's build root (scripts/buildroot.sh),
# with the compiler Debian built it with.
if [ ! -f "$kdir/Makefile" ] && [ -z "${LXBSM_IN_ROOT:-}" ]; then
	cache=$("$here/scripts/kernels.sh" --cache)
	for root in $("$here/scripts/kernels.sh" --table | awk '$5 != "host" {print $5}' | sort -u); do
		if [ -f "$cache/roots/$root/usr/src/linux-headers-$kver/Makefile" ]; then
			echo "  ROOT    $root (the build root of $kver)"
			exec "$here/scripts/buildroot.sh" --run "$root" "$here/scripts/build-module.sh" "$kver"
		fi
	done
fi
if [ ! -f "$kdir/Makefile" ]; then
	echo "build-module: no kernel headers for $kver at $kdir" >&2
	echo "  supported kernels are installed by 'make deps'; then pass KVER=<version> (supported here: $("$here/scripts/kernels.sh" --versions 2>/dev/null | tr '\n' ' '))" >&2
	exit 1
fi
mkdir -p "$out"
"$src/kmod/probe-features.sh" "$kdir" "$out/gen"
echo "  MODULE  lxbsm.ko for $kver (W=1)"
set +e
# kbuild runs -j1, as under a plain make: a make -j that runs this (make check
# does) passes its jobserver in MAKEFLAGS, and the inner make's "warning:
# jobserver unavailable" would fail the warning check below.
env -u MAKEFLAGS -u MFLAGS make -C "$kdir" M="$src" W=1 LXBSM_GEN="$out/gen" LXBSM_EXTRA_CFLAGS="$extra" modules >"$out/build.log" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ]; then
	cat "$out/build.log" >&2
	echo "build-module: build failed for $kver (log: $out/build.log)" >&2
	exit $rc
fi
if grep -E 'warning:|Warning:' "$out/build.log" | grep -v 'Skipping BTF generation' >&2; then
	echo "build-module: the build for $kver has warnings (log: $out/build.log)" >&2
	exit 1
fi
cp "$src/kmod/lxbsm.ko" "$out/lxbsm.ko"
echo "  OK      $out/lxbsm.ko"
