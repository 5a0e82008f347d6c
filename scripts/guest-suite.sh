#!/usr/bin/env bash
# Run tests/guest inside a QEMU guest for every supported kernel and say which
# kernels ran.  Fails if any kernel is missing, any test fails, or any guest's
# kernel log shows a splat (lxbsm-vm checks that).  Guests boot with memory-error
# detection (lxbsm-vm --memcheck: slub_debug, KFENCE where the kernel has it), so
# an overflow that does not oops is still reported, and fails the run.
#
# Guests run under round-robin TCG (one host thread each, see lxbsm-vm
# --tcg-threads), so the kernels' guests run side by side, one per host core;
# each line of their output is prefixed with its kernel.  LXBSM_GUEST_JOBS=1
# runs them one after the other.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
kernels=$(scripts/kernels.sh) || exit 1
jobs=${LXBSM_GUEST_JOBS:-$(nproc)}
declare -A result pid

run_one() { # kernel
	local k=$1 rundir=$here/build/guest/$1 start rc
	start=$(date +%s)
	mkdir -p "$rundir"
	# The run directory is the guest's writable share: results land there.
	.venv/bin/lxbsm-vm --kernel "$k" --load --no-build --memcheck --rundir "$rundir" -- \
		python3 -m pytest -p no:cacheprovider -v --junitxml="$rundir/junit.xml" tests/guest \
		2>&1 | sed -u "s/^/[$k] /"
	rc=${PIPESTATUS[0]}
	echo $(( $(date +%s) - start )) >"$rundir/suite-seconds"
	return "$rc"
}

finish() { # kernel
	local k=$1 rc
	wait "${pid[$k]}"
	rc=$?
	local secs
	secs=$(cat "$here/build/guest/$k/suite-seconds" 2>/dev/null || echo "?")
	if [ $rc -eq 0 ]; then
		result[$k]="passed (${secs} s)"
	else
		result[$k]="FAILED, status $rc (${secs} s)"
		status=1
	fi
}

status=0
running=()
for k in $kernels; do
	if [ ${#running[@]} -ge "$jobs" ]; then
		finish "${running[0]}"
		running=("${running[@]:1}")
	fi
	echo "=== guest suite on $k"
	run_one "$k" &
	pid[$k]=$!
	running+=("$k")
done
for k in "${running[@]}"; do
	finish "$k"
done
echo "=== guest suite summary"
for k in $kernels; do
	echo "  $k: ${result[$k]}"
done
exit $status
