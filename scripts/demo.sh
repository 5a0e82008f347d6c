#!/usr/bin/env bash
# make demo: boot the newest supported kernel in a QEMU guest, load lxbsm and
# show what it does.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
kernel=$(scripts/kernels.sh --versions | tail -n 1)
exec .venv/bin/lxbsm-vm --kernel "$kernel" --load --no-build -- sh scripts/demo-guest.sh
