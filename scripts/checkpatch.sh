#!/usr/bin/env bash
# Run the kernel's checkpatch.pl over the module's sources.  checkpatch.pl
# comes from Debian's linux-source package (installed by make deps) and is
# unpacked once into build/checkpatch/.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dir=$here/build/checkpatch
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
if [ ! -x "$dir/scripts/checkpatch.pl" ]; then
	if [ -z "$tarball" ]; then
		echo "checkpatch: no /usr/src/linux-source-*.tar.xz: run 'make deps'" >&2
		exit 1
	fi
	top=$(basename "$tarball" .tar.xz)
	mkdir -p "$dir"
	tar -xJf "$tarball" -C "$dir" --strip-components=1 \
		"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
		"$top/scripts/const_structs.checkpatch"
fi
cd "$here"
files=$(ls kmod/*.c kmod/*.h kmod/include/uapi/*.h kmod/probes/*.c)
echo "  CHECKPATCH $(echo $files | wc -w) files"
"$dir/scripts/checkpatch.pl" --no-tree --quiet --show-types --max-line-length=100 \
	--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG -f $files
