"""The ring as the daemon reads it: in batches, committed after they are written.

:class:`lxbsm_tools.ring.Ring` hands back a record's space as soon as the
next record is asked for.  The daemon wants to write a whole batch to the
trail first and only then give the space back, so that a SIGKILL between
the two loses nothing; :class:`BatchRing` adds that (read ahead without
consuming, then :meth:`commit`).  (Ring is getting the same two methods;
once it has them, BatchRing only adds submit/push.)
"""

from __future__ import annotations

from lxbsm_tools import control, uapi
from lxbsm_tools.ring import Ring, RingError


class BatchRing(Ring):
    def batch(self, max_bytes: int = 1 << 62) -> tuple[list[memoryview], int]:
        """Whole committed records from the consumer position, at most ``max_bytes``
        of them (at least one), and the position just after the last one."""
        cons = int(self._cons[0])
        prod = int(self._prod[0])
        if prod - cons > self.size or cons & 7:
            raise RingError(f"inconsistent positions: consumer {cons}, producer {prod}")
        out: list[memoryview] = []
        total = 0
        while cons < prod:
            off = cons & self.mask
            word = int(self._hdr[off // 4])
            if word & uapi.REC_BUSY:
                break
            length = word & uapi.REC_LEN_MASK
            if length > self.size // 4:
                raise RingError(f"record of {length} bytes at position {cons}")
            if out and total + length > max_bytes:
                break
            start = off + uapi.REC_HDR_SIZE
            if not word & uapi.REC_DISCARD and self._hdr[off // 4 + 1] == uapi.REC_BSM:
                out.append(self._data[start : start + length])
                total += length
            cons += (length + uapi.REC_HDR_SIZE + 7) & ~7
        return out, cons

    def commit(self, pos: int) -> None:
        """Hand the space up to ``pos`` (from :meth:`batch`) back to the kernel."""
        self._cons[0] = pos

    def pending(self) -> bool:
        return int(self._prod[0]) != int(self._cons[0])

    def submit(self, record: bytes) -> None:
        """audit(2): one whole BSM record into the ring (the fd was opened as root)."""
        uapi.submit(self.fd, record)

    def push(self, cfg: uapi.KernelConfig) -> None:
        control.push(self.fd, cfg)
