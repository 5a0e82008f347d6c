#!/usr/bin/env bash
# Run tests/guest inside a QEMU guest for every supported kernel and say which
# kernels ran what.  Each kernel's role in scripts/kernels.sh picks the tests:
# "full" the whole suite but the reload storm, "storm" the storm alone,
# "smoke" the smoke set (tests/guest/smoke.txt), "security" the smoke set and
# the hardening tests; the 6.1 kernel's lane adds the forwarding test, the 6.1 and
# 6.12 lanes the recovery scenario (the full suites hold it already).  Fails if any kernel is
# missing, any test fails, or any guest's kernel log shows a splat (lxbsm-vm
# checks that).  Guests boot with memory-error
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
table=$(scripts/kernels.sh) || exit 1
declare -A role kid
kernels=""
# Longest first, so that two slots finish together.
built=""
for r in storm full security smoke; do
	while read -r id v rl _; do
		[ "$rl" = "$r" ] || continue
		role[$v]=$rl kid[$v]=$id
		kernels="$kernels $v"
	done <<<"$table"
done
while read -r id v rl _; do
	[ "$rl" = build ] && built="$built $id ($v)"
done <<<"$table"
mapfile -t smoke < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tests/guest/smoke.txt)
STORM=tests/guest/test_lifecycle.py::test_reloads_under_a_storm_leave_nothing_behind
# tests/guest/test_forward.py (rsyslog over TLS, a 60 s outage, 20,000 records: about
# 3 minutes) runs in one lane only: this kernel's, whose guest boots the host's root,
# where scripts/deps.sh installs rsyslog.
FORWARD_KERNEL=6.1
FORWARD=tests/guest/test_forward.py
# tests/guest/test_recover.py (issue 17's scenario: sshd, three sessions, restores
# from the journal; about 3 minutes) runs in the full suites and in these lanes.
RECOVER_KERNELS=" 6.1 6.12 "
RECOVER=tests/guest/test_recover.py

tests_of() { # role
	case $1 in
	# test_packages.py is make test-packages' (it compiles the module with DKMS
	# inside the guest: 18-40 minutes under TCG, more than make check can give)
	full) echo tests/guest --ignore=tests/guest/test_packages.py --ignore="$FORWARD" --deselect "$STORM" ;;
	storm) echo "$STORM" ;;
	smoke) echo "${smoke[@]}" ;;
	security) echo "${smoke[@]}" tests/guest/test_hardening_*.py ;;
	esac
}
# What a kernel's lane runs besides its role's tests.
extra_of() { # kernel
	[ "${kid[$1]}" != "$FORWARD_KERNEL" ] || echo "$FORWARD"
	[ "${role[$1]}" = full ] || [[ $RECOVER_KERNELS != *" ${kid[$1]} "* ]] || echo "$RECOVER"
}
jobs=${LXBSM_GUEST_JOBS:-$(nproc)}
declare -A result pid

run_one() { # kernel
	local k=$1 rundir=$here/build/guest/$1 start rc
	start=$(date +%s)
	mkdir -p "$rundir"
	# The run directory is the guest's writable share: results land there.
	# shellcheck disable=SC2046
	# --timeout: a full suite takes 20-30 minutes on an idle machine.
	.venv/bin/lxbsm-vm --kernel "$k" --load --no-build --memcheck --timeout 3600 --rundir "$rundir" -- \
		python3 -m pytest -p no:cacheprovider -v --durations=15 --junitxml="$rundir/junit.xml" \
		$(tests_of "${role[$k]}") $(extra_of "$k") 2>&1 | sed -u "s/^/[${kid[$k]}] /"
	rc=${PIPESTATUS[0]}
	echo $(( $(date +%s) - start )) >"$rundir/suite-seconds"
	return "$rc"
}

# The result of kernel $1, whose run ended with status $2.
finish() { # kernel status
	local k=$1 rc=$2 secs
	secs=$(cat "$here/build/guest/$k/suite-seconds" 2>/dev/null || echo "?")
	local what
	case ${role[$k]} in
	full) what="full suite but the storm" ;;
	storm) what="30-reload storm" ;;
	security) what="smoke set + hardening tests" ;;
	*) what="${role[$k]} set" ;;
	esac
	if [ "$rc" -eq 0 ]; then
		result[$k]="$what passed (${secs} s)"
	else
		result[$k]="$what FAILED, status $rc (${secs} s)"
		status=1
	fi
}

# Wait for whichever running kernel ends first (not the oldest: a slot that
# finished a short run takes the next kernel at once).
reap_one() {
	local done_pid rc k keep=()
	wait -n -p done_pid "${pid[@]}"
	rc=$?
	for k in "${running[@]}"; do
		if [ "${pid[$k]}" = "$done_pid" ]; then
			finish "$k" "$rc"
			unset "pid[$k]"
		else
			keep+=("$k")
		fi
	done
	running=("${keep[@]}")
}

status=0
running=()
for k in $kernels; do
	while [ ${#running[@]} -ge "$jobs" ]; do
		reap_one
	done
	echo "=== guest tests on ${kid[$k]} ($k): ${role[$k]}"
	run_one "$k" &
	pid[$k]=$!
	running+=("$k")
done
while [ ${#running[@]} -gt 0 ]; do
	reap_one
done
echo "=== guest suite summary"
[ -z "$built" ] || echo "  built only, no guest run (role build in scripts/kernels.sh):$built"
for k in $kernels; do
	printf '  %-9s %-26s %s\n' "${kid[$k]}" "$k" "${result[$k]}"
done
exit $status
