#!/usr/bin/env bash
# Print the supported kernels installed here, one per line: the newest Debian
# bookworm 6.1 generic kernel and the newest bookworm-backports 6.12 generic
# kernel, each with its image in /boot and headers in /lib/modules.
# Exits 1 (naming what is missing) unless both are present.
set -euo pipefail
pick() { # pattern
	local v best=""
	for d in /lib/modules/$1; do
		v=$(basename "$d")
		[ -f "/boot/vmlinuz-$v" ] && [ -f "$d/build/Makefile" ] || continue
		best=$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n 1)
	done
	printf '%s' "$best"
}
k61=$(pick '6.1.0-*-amd64')
k612=$(pick '6.12.*+deb12-amd64')
missing=""
[ -n "$k61" ] || missing="$missing 6.1 (bookworm)"
[ -n "$k612" ] || missing="$missing 6.12 (bookworm-backports)"
if [ -n "$missing" ]; then
	echo "kernels.sh: supported kernel image or headers missing:$missing; run 'make deps'" >&2
	exit 1
fi
echo "$k61"
echo "$k612"
