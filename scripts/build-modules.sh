#!/usr/bin/env bash
# Build lxbsm.ko for every supported kernel (scripts/kernels.sh), $LXBSM_BUILD_JOBS
# (default: the number of CPUs) at a time.  Each kernel builds from its own copy of
# the sources under build/src/<version>/ (kbuild writes its objects beside them),
# kept with their times so that a rebuild compiles only what changed; the module
# lands in build/<version>/lxbsm.ko.  A kernel that is missing or fails to build
# fails the whole, after the others have finished; its build log is printed.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
kernels=$(scripts/kernels.sh --versions) || exit 1
jobs=${LXBSM_BUILD_JOBS:-$(nproc)}

build_one() { # version
	local k=$1 src=$here/build/src/$1 start rc
	start=$(date +%s)
	mkdir -p "$src"
	# Sources only: objects of another kernel's build must not come along.
	tar -C "$here" --exclude='*.o' --exclude='*.ko' --exclude='.*.cmd' --exclude='*.mod' \
		--exclude='*.mod.c' --exclude='*.order' --exclude='Module.symvers' --exclude='.*.d' \
		-cf - VERSION Kbuild kmod | tar -C "$src" -xpf -
	LXBSM_SRC=$src scripts/build-module.sh "$k" >"$src/make.log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "  OK      $k ($(($(date +%s) - start)) s): build/$k/lxbsm.ko"
	else
		cat "$src/make.log"
		echo "  FAILED  $k (log: build/src/$k/make.log)"
	fi
	return $rc
}
export -f build_one
export here

printf '%s\n' $kernels | xargs -P "$jobs" -I{} bash -c 'build_one {}'
