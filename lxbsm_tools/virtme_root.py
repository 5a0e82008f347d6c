"""virtme-run, with the guest root's 9p options chosen by lxbsm-vm.

virtme-ng mounts the guest's root from its initramfs with a fixed
``msize=524288`` and no cache (every lookup and read goes to the host).
Kernels before 6.0 allocate two buffers of the full msize for every 9p
request, so on 5.10 a ``stat`` on the root took 3.6 ms at that msize and
0.9 ms at 32768; and the read-only root, which nothing changes while a guest
runs, may be cached: on 6.12, 200 execs of /bin/true took 17 s with
cache=loose and 24 s without (docs/kernel.md, "Guests").  lxbsm-vm runs this
in place of virtme-run (first in vng's PATH) with $LXBSM_ROOT_9P set to the
options to use, e.g. ``msize=32768,cache=loose``.
"""

from __future__ import annotations

import os
import re
import sys

VIRTME_MOUNT = "msize=524288"
OPTIONS = re.compile(r"msize=\d+,cache=(?:loose|none)")


def main() -> int:
    import virtme.mkinitramfs as mk  # virtme-ng's initramfs builder
    from virtme.commands import run

    options = os.environ.get("LXBSM_ROOT_9P", "")
    text: str = mk._MOUNT_ROOT_HOST
    if not OPTIONS.fullmatch(options) or text.count(VIRTME_MOUNT) != 1:
        print(
            f"lxbsm-vm: cannot mount the guest's root with 9p options {options!r}: "
            + (
                "they are not msize=N,cache=loose|none."
                if not OPTIONS.fullmatch(options)
                else f"this virtme-ng's initramfs does not mount the root with {VIRTME_MOUNT}. "
                "Install the virtme-ng that pyproject.toml names (make deps)."
            ),
            file=sys.stderr,
        )
        return 2
    mk._MOUNT_ROOT_HOST = text.replace(VIRTME_MOUNT, options)
    status: int = run.main()
    return status


if __name__ == "__main__":
    sys.exit(main())
