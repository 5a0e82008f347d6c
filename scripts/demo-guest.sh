#!/bin/sh
# Runs inside the demo guest, with lxbsm.ko loaded by lxbsm-vm.
set -e
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "the module is loaded ($(uname -r))"
grep '^lxbsm ' /proc/modules
dmesg | grep 'lxbsm:' | tail -n 1

step "its device: root only, one consumer at a time"
ls -l /dev/lxbsm

step "lxbsm-audit status"
lxbsm-audit status

step "a record submitted from user space comes back through the mmap ring"
python3 - <<'PY'
import os
from pathlib import Path
from lxbsm_tools import uapi
from lxbsm_tools.ring import Ring

rec = (Path(os.environ.get("LXBSM_SHARED", "../shared")) / "bsm-samples" / "openbsm-reference"
       / "text_record").read_bytes()
with Ring() as ring:
    list(ring.records())
    fd = uapi.open_control()
    uapi.submit(fd, rec)
    os.close(fd)
    got = ring.read(timeout=5)
print(f"submitted {len(rec)} bytes, read back {len(got)} record(s), identical: {got == [rec]}")
print(got[0].hex(" ", 4) if got else "")
PY

step "status after it"
lxbsm-audit status | grep -E 'records|submitted|ring in use|consumer'
