"""The ring as the daemon reads it: in batches, committed after they are written.

The daemon writes a whole batch (:meth:`Ring.batch`) to the trail first and
only then gives the space back (:meth:`Ring.commit`), so that a SIGKILL
between the two loses nothing.
"""

from __future__ import annotations

from lxbsm_tools import control, uapi
from lxbsm_tools.ring import Ring


class BatchRing(Ring):
    """The daemon's ring: :meth:`Ring.batch` and :meth:`Ring.commit`, plus control."""

    def submit(self, record: bytes) -> None:
        """audit(2): one whole BSM record into the ring (the fd was opened as root)."""
        uapi.submit(self.fd, record)

    def push(self, cfg: uapi.KernelConfig, exec_rules: uapi.ExecRules | None = None) -> None:
        """Pre-selection, then (when given) the exec control rules."""
        control.push(self.fd, cfg)
        if exec_rules is not None:
            uapi.set_exec_rules(self.fd, exec_rules)

    def set_protect(self, fds: list[int]) -> None:
        """The protected trees (directory descriptors); none: protection off."""
        uapi.set_protect(self.fd, fds)

    def protect_status(self) -> uapi.ProtectStatus:
        return uapi.protect_status(self.fd)
