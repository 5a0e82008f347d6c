#!/usr/bin/env bash
# Run tests/guest inside a QEMU guest for every supported kernel and say which
# kernels ran.  Fails if any kernel is missing, any test fails, or any guest's
# kernel log shows a splat (lxbsm-vm checks that).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
kernels=$(scripts/kernels.sh) || exit 1
declare -A result
status=0
for k in $kernels; do
	echo "=== guest suite on $k"
	start=$(date +%s)
	# The run directory is the guest's writable share: results land there.
	rundir=$here/build/guest/$k
	.venv/bin/lxbsm-vm --kernel "$k" --load --no-build --rundir "$rundir" -- \
		python3 -m pytest -p no:cacheprovider -v --junitxml="$rundir/junit.xml" tests/guest
	rc=$?
	secs=$(( $(date +%s) - start ))
	if [ $rc -eq 0 ]; then
		result[$k]="passed (${secs} s)"
	else
		result[$k]="FAILED, status $rc (${secs} s)"
		status=1
	fi
done
echo "=== guest suite summary"
for k in $kernels; do
	echo "  $k: ${result[$k]}"
done
exit $status
