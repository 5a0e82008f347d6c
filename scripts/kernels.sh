#!/usr/bin/env bash
# The supported kernels: the one list.  Everything else (make deps, make modules,
# make check, lxbsm-vm --list) reads it from here.
#
#   kernels.sh              one line per kernel present: ID VERSION ROLE ROOT; exits 1,
#                           naming what is missing, unless every kernel's image and headers are here
#   kernels.sh --versions   the versions only, one per line (same check)
#   kernels.sh --table      the table below, comments stripped (no check)
#   kernels.sh --cache      the cache directory holding build roots and guest kernels
#
# Columns: ID (what lxbsm-vm --kernel takes), the Debian SUITE the kernel comes
# from, its image FLAVOUR (linux-image-<flavour> is the metapackage), a GLOB the
# version matches, the build ROOT its module is compiled in ("host": this Debian 12
# machine, whose gcc-12 is the one bookworm's kernels were built with; otherwise a
# minimal root of that suite made by scripts/buildroot.sh, with the suite's gcc and
# the kernel's headers), and the ROLE in make check: "full" runs the whole guest
# suite but the reload storm, "storm" the storm alone (it loads, records
# and unloads 30 times), "smoke" the smoke set (tests/guest/smoke.txt),
# "security" the smoke set and the hardening tests (PREEMPT_RT: a lock taken
# in the wrong context splats), and
# "build" only builds the module (W=1, warnings fail), for a kernel whose guest
# runs do not pass yet (none now).  The oldest (5.10) and the newest kernel run
# the full suite.  The storm (30 load/unload cycles under a fork/exec/open/
# connect load, 6-20 s a cycle under TCG) runs once, on 6.12-bpo: on every
# kernel it would pass the 45 minutes CI may take.  5.10's full suite was the
# longest run (a 9p root is slow before 6.0: docs/kernel.md, "Guests"), so 6.1
# runs the smoke set; its PREEMPT_RT build runs the hardening tests.
set -euo pipefail

# Not under /var/cache: the guests (virtme-ng) hide that behind a tmpfs, and a
# guest kernel's modules must be visible to it.
CACHE=${LXBSM_CACHE:-/var/lib/lxbsm-build}

TABLE='
# ID       SUITE               FLAVOUR   GLOB                  ROOT              ROLE
5.10       bullseye            amd64     5.10.0-*-amd64        bullseye          full
6.1        bookworm            amd64     6.1.0-*-amd64         host              smoke
6.1-rt     bookworm            rt-amd64  6.1.0-*-rt-amd64      host              security
6.12-bpo   bookworm-backports  amd64     6.12.*+deb12-amd64    host              storm
6.12       trixie              amd64     6.12.*+deb13-amd64    trixie            smoke
6.12-rt    trixie              rt-amd64  6.12.*+deb13-rt-amd64 trixie            security
7.2        sid                 amd64     7.2.*-amd64           sid               smoke
7.3        trixie-backports    amd64     7.3.*+deb13-amd64     trixie-backports  full
'

table() { printf '%s\n' "$TABLE" | sed -e 's/#.*//' -e '/^[[:space:]]*$/d'; }

# The newest version matching GLOB (rt and generic kept apart) with headers under
# the root's /lib/modules and an image where lxbsm-vm looks for it.
pick() { # glob flavour root
	local glob=$1 flavour=$2 root=$3 base img d v best=""
	if [ "$root" = host ]; then base=""; else base=$CACHE/roots/$root; fi
	for d in "$base"/lib/modules/$glob; do
		v=$(basename "$d")
		case "$flavour:$v" in
		amd64:*-rt-amd64 | amd64:*-cloud-amd64) continue ;;
		esac
		if [ "$root" = host ]; then img=/boot/vmlinuz-$v; else img=$CACHE/kernels/$v/boot/vmlinuz-$v; fi
		# A root's build link is absolute (/usr/src/...): look in the root.
		[ -f "$img" ] && { [ -f "$d/build/Makefile" ] || [ -f "$base/usr/src/linux-headers-$v/Makefile" ]; } ||
			continue
		best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n 1)
	done
	printf '%s' "$best"
}

case "${1:-}" in
--table)
	table
	exit 0
	;;
--cache)
	echo "$CACHE"
	exit 0
	;;
esac

missing="" lines=""
while read -r id suite flavour glob root role; do
	v=$(pick "$glob" "$flavour" "$root")
	if [ -z "$v" ]; then
		missing="$missing $id ($suite linux-image-$flavour)"
		continue
	fi
	lines+="$id $v $role $root"$'\n'
done < <(table)
if [ "${1:-}" = --versions ]; then
	printf '%s' "$lines" | awk '{print $2}'
else
	printf '%s' "$lines"
fi
if [ -n "$missing" ]; then
	echo "kernels.sh: supported kernel image or headers missing:$missing; run 'make deps'" >&2
	exit 1
fi
