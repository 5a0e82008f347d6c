#!/usr/bin/env bash
# Install, idempotently, everything lxbsm's build and guest tests need on a Debian 12 machine:
# QEMU, the kernels of scripts/kernels.sh (this host's Debian 12 ones installed with their headers,
# the others' build roots and guest images made by scripts/buildroot.sh, cached in
# /var/lib/lxbsm-build), guest tooling, and the project's .venv. Safe to run again: each step checks before it acts.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
python=${PYTHON:-/usr/bin/python3}
stamp="$here/build/.deps-apt"
export DEBIAN_FRONTEND=noninteractive

say() { printf '[deps] %s\n' "$*"; }
need_root() {
	if [ "$(id -u)" != 0 ]; then
		say "installing system packages needs root: run 'sudo make deps'"
		exit 1
	fi
}

# Packages the host needs to build modules and boot guests, and the tools the guest tests run
# (rsyslog, rsyslog-gnutls and openssl: the TLS collector of tests/guest/test_forward.py).
host_pkgs=(qemu-system-x86 qemu-utils busybox-static kmod cpio zstd
	build-essential bc flex bison libelf-dev libssl-dev dwarves
	stress-ng strace openssh-server openssh-client sudo auditd bpftrace python3 python3-venv
	linux-source-6.1 gcc-multilib liburing-dev libseccomp2 mmdebstrap
	dkms debhelper dh-dkms dh-python lintian python3-construct python3-pyudev python3-rich
	python3-merge3
	rsyslog rsyslog-gnutls openssl)

backports_list=/etc/apt/sources.list.d/lxbsm-bookworm-backports.list

have_backports() {
	grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/
}

# The versioned image package that a suite's linux-image-amd64 metapackage points at.
kernel_pkg_of() { # suite flavour
	apt-cache depends -t "$1" "linux-image-$2" 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

missing_of() { # package... -> prints the ones not installed
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			printf '%s\n' "$p"
	done
}

# The kernels built on this host (ROOT "host" in scripts/kernels.sh): SUITE FLAVOUR per line.
host_kernels() { "$here/scripts/kernels.sh" --table | awk '$5 == "host" {print $2, $3}'; }

# Sets kpkgs (the versioned image packages, "suite package" per entry) and the lists of
# what is missing; returns 1 when a kernel cannot be resolved.
resolve() {
	local suite flavour pkg from
	kpkgs=() miss_main=() miss_bpo=()
	while read -r suite flavour; do
		pkg=""
		from=$suite
		if [ "$suite" = bookworm ]; then
			pkg=$(kernel_pkg_of bookworm-security "$flavour")
		fi
		[ -n "$pkg" ] || pkg=$(kernel_pkg_of "$suite" "$flavour")
		[ -n "$pkg" ] || return 1
		kpkgs+=("$suite:$pkg")
		if [ "$from" = bookworm-backports ]; then
			mapfile -t -O "${#miss_bpo[@]}" miss_bpo < <(missing_of "$pkg" "${pkg/linux-image-/linux-headers-}")
		else
			mapfile -t -O "${#miss_main[@]}" miss_main < <(missing_of "$pkg" "${pkg/linux-image-/linux-headers-}")
		fi
	done < <(host_kernels)
	mapfile -t -O "${#miss_main[@]}" miss_main < <(missing_of "${host_pkgs[@]}")
}

apt_steps() {
	kpkgs=() miss_main=() miss_bpo=()
	if have_backports && resolve && [ ${#miss_main[@]} -eq 0 ] && [ ${#miss_bpo[@]} -eq 0 ]; then
		say "system packages present (kernels: ${kpkgs[*]})"
		return 0
	fi
	need_root
	if ! have_backports; then
		say "adding the bookworm-backports suite ($backports_list)"
		echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$backports_list"
	fi
	say "apt-get update"
	apt-get update -qq
	if ! resolve; then
		say "cannot resolve the Debian kernel packages of: $(host_kernels | tr '\n' ';')"
		exit 1
	fi
	if [ ${#miss_main[@]} -gt 0 ]; then
		say "apt-get install ${miss_main[*]}"
		apt-get install -y -qq --no-install-recommends "${miss_main[@]}" >/dev/null
	fi
	if [ ${#miss_bpo[@]} -gt 0 ]; then
		say "apt-get install -t bookworm-backports ${miss_bpo[*]}"
		apt-get install -y -qq --no-install-recommends -t bookworm-backports "${miss_bpo[@]}" >/dev/null
	fi
	say "kernels: ${kpkgs[*]}"
}

# The build roots of the kernels of other suites, and their guest kernels.  Each
# root is its own directory and its work is mostly downloading, so they are made
# side by side (bg_step); on a fresh machine that is the time of the largest.
root_steps() {
	local root roots
	roots=$("$here/scripts/kernels.sh" --table | awk '$5 != "host" {print $5}' | sort -u)
	for root in $roots; do
		if [ "$(id -u)" != 0 ]; then
			[ -f "$("$here/scripts/kernels.sh" --cache)/roots/$root/.lxbsm-root" ] || need_root
		fi
	done
	for root in $roots; do
		bg_step "root-$root" "$here/scripts/buildroot.sh" "$root"
	done
}

# Steps that run in the background, each with its output in build/deps/NAME.log:
# wait_steps waits for all, shows each one's output (whole, in the order they
# were started) and fails if any failed.
bg_names=() bg_pids=()
trap '[ ${#bg_pids[@]} -eq 0 ] || kill "${bg_pids[@]}" 2>/dev/null; exit 130' INT TERM
bg_step() { # name cmd...
	local name=$1
	shift
	mkdir -p "$here/build/deps"
	"$@" >"$here/build/deps/$name.log" 2>&1 &
	bg_names+=("$name") bg_pids+=($!)
}
wait_steps() {
	local i rc failed=()
	for i in "${!bg_pids[@]}"; do
		rc=0
		wait "${bg_pids[$i]}" || rc=$?
		cat "$here/build/deps/${bg_names[$i]}.log"
		if [ "$rc" -ne 0 ]; then
			say "${bg_names[$i]} FAILED, status $rc (log: build/deps/${bg_names[$i]}.log)"
			failed+=("${bg_names[$i]}")
		fi
	done
	bg_names=() bg_pids=()
	if [ ${#failed[@]} -gt 0 ]; then
		say "failed: ${failed[*]}"
		exit 1
	fi
}

venv_steps() {
	if [ ! -x "$venv/bin/python" ]; then
		say "creating $venv"
		"$python" -m venv "$venv"
	fi
	if ! "$venv/bin/python" -c 'import lxbsm_tools, pytest, construct, hypothesis, virtme_ng, merge3' 2>/dev/null ||
		[ "$here/pyproject.toml" -nt "$venv/.lxbsm-installed" ]; then
		say "pip install -e .[dev,bench] into .venv"
		mkdir -p "$here/build"
		if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
			"$venv/bin/python" -m pip install -q -e "$here[dev,bench]"; } >"$here/build/pip.log" 2>&1; then
			cat "$here/build/pip.log" >&2
			say "pip install failed (log: build/pip.log)"
			exit 1
		fi
		touch "$venv/.lxbsm-installed"
	fi
}

apt_steps
# The roots (apt in chroots of their own) and the venv (pip) need only what
# apt_steps installed, not each other: all of them at once.
root_steps
bg_step venv venv_steps
wait_steps
mkdir -p "$(dirname "$stamp")"
touch "$stamp"
say "ready"
