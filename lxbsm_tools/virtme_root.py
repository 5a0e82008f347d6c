"""virtme-run, with the guest root's 9p msize chosen by lxbsm-vm.

virtme-ng mounts the guest's root from its initramfs with a fixed
``msize=524288``.  Kernels before 6.0 allocate two buffers of the full msize
for every 9p request and hand QEMU the whole receive buffer, so on 5.10 a
``stat`` of a file on the root took 14 ms at that msize and 1.8 ms at 8192
(docs/kernel.md, "Guests").  lxbsm-vm runs this in place of virtme-run (first
in vng's PATH) when the guest's root gets another msize (lxbsm-vm --msize).
"""

from __future__ import annotations

import os
import sys

VIRTME_MOUNT = "msize=524288"


def main() -> int:
    import virtme.mkinitramfs as mk  # virtme-ng's initramfs builder
    from virtme.commands import run

    msize = os.environ.get("LXBSM_9P_MSIZE", "")
    text: str = mk._MOUNT_ROOT_HOST
    if not msize.isdigit() or text.count(VIRTME_MOUNT) != 1:
        print(
            f"lxbsm-vm: cannot set the guest root's 9p msize to {msize!r}: this virtme-ng's "
            f"initramfs does not mount the root with {VIRTME_MOUNT}.  Run lxbsm-vm with "
            "--msize 0 (virtme's own msize) or report the virtme-ng version.",
            file=sys.stderr,
        )
        return 2
    mk._MOUNT_ROOT_HOST = text.replace(VIRTME_MOUNT, f"msize={msize}")
    status: int = run.main()
    return status


if __name__ == "__main__":
    sys.exit(main())
