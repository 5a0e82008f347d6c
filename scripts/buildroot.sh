#!/usr/bin/env bash
# Make (idempotently) the build root ROOT named in scripts/kernels.sh, and unpack
# the guest kernels built in it.
#
#   buildroot.sh ROOT             make $CACHE/roots/ROOT and $CACHE/kernels/<version>/
#   buildroot.sh --run ROOT CMD   run CMD inside the root, with this repository (and
#                                 $LXBSM_SRC, $LXBSM_OUT) at the same paths as here
#
# A root is a minimal Debian system of the kernel's suite (mmdebstrap --variant=apt)
# holding the suite's gcc, make and the headers of each of the root's kernels, so a
# module is compiled by the compiler Debian built the kernel with.  The guest kernel is
# the suite's image package, fetched by the root's apt and unpacked (dpkg-deb -x) under
# $CACHE/kernels/<version>/: nothing is installed on the host, no boot loader touched.
# A root is made once and kept: .lxbsm-root inside it records what it was made for;
# when the table asks for something else, the root is made anew.  LXBSM_REFRESH=1
# remakes it (to pick up a newer kernel of the suite).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$("$here/scripts/kernels.sh" --cache)
MIRROR=${LXBSM_MIRROR:-http://deb.debian.org/debian}
SECURITY=${LXBSM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

say() { printf '[buildroot] %s\n' "$*"; }

# Run a command inside root $1 in a private mount namespace: /proc, /dev and the
# trees the build reads and writes are bind-mounted at their own paths.
run_in() { # root cmd...
	local r=$CACHE/roots/$1
	shift
	[ -f "$r/.lxbsm-root" ] || {
		echo "buildroot: no build root at $r: run 'make deps'" >&2
		exit 1
	}
	local binds=("$here")
	[ -n "${LXBSM_SRC:-}" ] && binds+=("$LXBSM_SRC")
	[ -n "${LXBSM_OUT:-}" ] && mkdir -p "$LXBSM_OUT" && binds+=("$LXBSM_OUT")
	unshare --mount --propagation private -- bash -euo pipefail -c '
		r=$1; shift; n=$1; shift
		mount -t proc proc "$r/proc"
		mount --rbind /dev "$r/dev"
		for ((i = 0; i < n; i++)); do
			mkdir -p "$r$1"; mount --bind "$1" "$r$1"; shift
		done
		exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			LXBSM_SRC="${LXBSM_SRC:-}" LXBSM_OUT="${LXBSM_OUT:-}" \
			LXBSM_EXTRA_CFLAGS="${LXBSM_EXTRA_CFLAGS:-}" LXBSM_IN_ROOT=1 "$@"
	' run_in "$r" "${#binds[@]}" "${binds[@]}" "$@"
}

if [ "${1:-}" = --run ]; then
	shift
	root=${1:?usage: buildroot.sh --run ROOT CMD...}
	shift
	run_in "$root" "$@"
	exit $?
fi

root=${1:?usage: buildroot.sh ROOT}
rows=$("$here/scripts/kernels.sh" --table | awk -v r="$root" '$5 == r')
[ -n "$rows" ] || {
	echo "buildroot: no kernel in scripts/kernels.sh is built in root '$root'" >&2
	exit 1
}

# The suites whose lists the root has, and the headers it installs.
suite_lists() { # suite -> apt source lines
	case $1 in
	sid | unstable) echo "deb $MIRROR sid main" ;;
	*-backports)
		echo "deb $MIRROR ${1%-backports} main"
		echo "deb $MIRROR ${1%-backports}-updates main"
		echo "deb $SECURITY ${1%-backports}-security main"
		echo "deb $MIRROR $1 main"
		;;
	*)
		echo "deb $MIRROR $1 main"
		echo "deb $MIRROR $1-updates main"
		echo "deb $SECURITY $1-security main"
		;;
	esac
}
base_suite=$(echo "$rows" | awk 'NR == 1 {print $2}')
base_suite=${base_suite%-backports}
sources=$(echo "$rows" | awk '{print $2}' | sort -u | while read -r s; do suite_lists "$s"; done | sort -u)
includes="gcc,make,kmod,bash,perl"
while read -r _ suite flavour _; do
	case $suite in
	*-backports) includes+=",linux-headers-$flavour/$suite" ;;
	*) includes+=",linux-headers-$flavour" ;;
	esac
done <<<"$rows"
want="$includes|$sources"

dir=$CACHE/roots/$root
if [ -f "$dir/.lxbsm-root" ] && [ "$(cat "$dir/.lxbsm-root")" = "$want" ] && [ -z "${LXBSM_REFRESH:-}" ]; then
	say "$root: present ($(ls "$dir/lib/modules" | tr '\n' ' '))"
else
	command -v mmdebstrap >/dev/null || {
		echo "buildroot: mmdebstrap is missing: run 'make deps'" >&2
		exit 1
	}
	say "$root: making a $base_suite root with $includes"
	start=$(date +%s)
	# An mmdebstrap that was killed may have left /proc, /sys or /dev mounted
	# inside the half-made root: never let rm -rf walk into those.
	if awk -v d="$dir.new/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/mounts; then
		awk -v d="$dir.new/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r |
			xargs -r -n 1 umount -l
	fi
	if awk -v d="$dir.new/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/mounts; then
		echo "buildroot: file systems are still mounted under $dir.new: unmount them first" >&2
		exit 1
	fi
	rm -rf --one-file-system "$dir.new"
	mkdir -p "$CACHE/roots"
	mapfile -t srcargs <<<"$sources"
	# Check-Valid-Until: a mirror may serve a suite whose Release file has expired
	# (sid's, when the mirror is a snapshot); the signature is still checked.
	if ! mmdebstrap --quiet --variant=apt --components=main --include="$includes" \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		"$base_suite" "$dir.new" "${srcargs[@]}" >"$CACHE/roots/$root.log" 2>&1; then
		cat "$CACHE/roots/$root.log" >&2
		echo "buildroot: mmdebstrap failed for $root (log: $CACHE/roots/$root.log)" >&2
		exit 1
	fi
	printf '%s' "$want" >"$dir.new/.lxbsm-root"
	rm -rf --one-file-system "$dir"
	mv "$dir.new" "$dir"
	say "$root: made in $(($(date +%s) - start)) s ($(ls "$dir/lib/modules" | tr '\n' ' '))"
fi

# The guest kernel of each headers version in the root: the image package of that
# version, fetched by the root's apt and unpacked under $CACHE/kernels/<version>/.
for d in "$dir"/lib/modules/*/; do
	v=$(basename "$d")
	k=$CACHE/kernels/$v
	[ -f "$k/boot/vmlinuz-$v" ] && [ -d "$k/lib/modules/$v/kernel" ] && continue
	say "$root: fetching the guest kernel linux-image-$v"
	rm -rf "$k.new" "$dir/tmp/lxbsm-dl"
	mkdir -p "$k.new" "$dir/tmp/lxbsm-dl"
	# mmdebstrap leaves no package lists behind: update them first.  From 7.x the
	# image package only depends on linux-binary-<v> (the image) and
	# linux-modules-<v>: fetch those too where they exist.
	chmod 0777 "$dir/tmp/lxbsm-dl"
	if ! run_in "$root" sh -c "cd /tmp/lxbsm-dl && apt-get -q -o Acquire::Check-Valid-Until=false update &&
		apt-get -q download linux-image-$v && for p in linux-binary-$v linux-modules-$v; do
			if apt-cache show \$p >/dev/null 2>&1; then apt-get -q download \$p || exit 1; fi; done" \
		>"$dir/tmp/dl.log" 2>&1; then
		cat "$dir/tmp/dl.log" >&2
		echo "buildroot: cannot fetch linux-image-$v in root $root" >&2
		exit 1
	fi
	for deb in "$dir"/tmp/lxbsm-dl/*.deb; do
		dpkg-deb -x "$deb" "$k.new"
	done
	# Merged-/usr packages ship usr/lib/modules; the guest wants lib/modules.
	# (7.x splits the kernel over packages that use either.)
	if [ -d "$k.new/usr/lib/modules" ]; then
		mkdir -p "$k.new/lib/modules"
		cp -a "$k.new/usr/lib/modules/." "$k.new/lib/modules/"
		rm -rf "$k.new/usr/lib/modules"
	fi
	# The image is boot/vmlinuz-<v>, or lib/modules/<v>/vmlinuz from 7.x on.
	img=$(find "$k.new" -name "vmlinuz-$v" -print -quit)
	[ -n "$img" ] || [ ! -f "$k.new/lib/modules/$v/vmlinuz" ] || img=$k.new/lib/modules/$v/vmlinuz
	if [ -z "$img" ] || [ ! -d "$k.new/lib/modules/$v/kernel" ]; then
		echo "buildroot: the packages of linux-image-$v hold no vmlinuz-$v or no modules" >&2
		exit 1
	fi
	if [ "$img" != "$k.new/boot/vmlinuz-$v" ]; then
		mkdir -p "$k.new/boot"
		mv "$img" "$k.new/boot/vmlinuz-$v"
	fi
	depmod -b "$k.new" "$v" 2>&1 | { grep -v "WARNING: could not open modules.builtin" >&2 || true; }
	rm -rf "$k" "$dir/tmp/lxbsm-dl"
	mv "$k.new" "$k"
	say "$root: guest kernel $v in $k"
done
