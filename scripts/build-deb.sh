#!/usr/bin/env bash
# make deb: build lxbsm-dkms_<v>_all.deb and lxbsm-tools_<v>_all.deb into
# build/deb/ (v: the VERSION file) with dpkg-buildpackage, from a copy of the
# files git knows (tracked, or new and not ignored), then check both with
# lintian: an error fails the build, warnings are shown.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$here/VERSION")
out=$here/build/deb
stage=$out/src/lxbsm-$version

for tool in dpkg-buildpackage dh dh_dkms dh_python3 lintian; do
	command -v "$tool" >/dev/null || {
		echo "build-deb: $tool is missing: run make deps" >&2
		exit 1
	}
done

rm -rf "$out"
mkdir -p "$stage"
(cd "$here" && git ls-files -z --cached --others --exclude-standard -- \
	Kbuild VERSION kmod lxbsm_tools dist debian docs README.md pyproject.toml \
	scripts/console-scripts.py |
	xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	tar --null -T - -cf -) | tar -C "$stage" -xf -

# The changelog carries the version into the packages; its date is the last
# commit's, so the same tree builds the same packages.
when=$(git -C "$here" log -1 --format=%cD 2>/dev/null || date -R)
commit=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
cat >"$stage/debian/changelog" <<CHANGELOG
lxbsm ($version) unstable; urgency=medium

  * Built from git $commit.

 -- $(sed -n 's/^Maintainer: //p' "$stage/debian/control")  $when
CHANGELOG

echo "  DEB     lxbsm-dkms, lxbsm-tools $version"
if ! (cd "$stage" && dpkg-buildpackage -b -us -uc >"$out/build.log" 2>&1); then
	cat "$out/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed (log: $out/build.log)" >&2
	exit 1
fi
mv "$out/src/"*.deb "$out/"
echo "  LINTIAN"
lintian --fail-on error "$out/lxbsm-dkms_${version}_all.deb" \
	"$out/lxbsm-tools_${version}_all.deb" | tee "$out/lintian.log"
echo "  OK      $out/lxbsm-dkms_${version}_all.deb $out/lxbsm-tools_${version}_all.deb"
