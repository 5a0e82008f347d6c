"""Read BSM records from the lxbsm ring: mmap + poll, no copies, no signals.

The kernel publishes records in a ring laid out like the BPF ring buffer
(kmod/include/uapi/lxbsm.h).  This reader owns the consumer role: it maps the
consumer page read-write and the producer page plus the doubled data area
read-only, walks committed records in order, and advances consumer_pos only
after the caller is done with a record, so a reader killed mid-stream loses
nothing: the next one starts at the first record not yet consumed.

Ordering on x86-64: loads are not reordered with older loads and stores are
not reordered with older loads or stores (x86-TSO), so reading producer_pos
before a record header, and the header before the payload, and storing
consumer_pos after reading the payload, give the acquire/release pairs the
kernel's smp_store_release()/smp_load_acquire() expect.  poll() re-checks
producer != consumer in the kernel after queueing on the wait queue, so no
wakeup is lost.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
from collections.abc import Iterator
from types import TracebackType

from lxbsm_tools import uapi


class RingError(Exception):
    """The ring's shared state is inconsistent (a bug, never expected)."""


class Ring:
    """The single consumer of /dev/lxbsm."""

    def __init__(self, path: str = uapi.DEVICE) -> None:
        self._copy_buf: ctypes.Array[ctypes.c_char] | None = None
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} does not exist: load the module first (insmod lxbsm.ko or modprobe lxbsm)"
            ) from None
        except OSError as e:
            if e.errno == errno.EBUSY:
                msg = f"{path} already has a consumer (is lxbsm-auditd running?)"
                raise OSError(e.errno, msg) from None
            raise
        try:
            try:
                st = uapi.get_status(self.fd)
            except OSError as e:
                if e.errno not in (errno.ENOTTY, errno.EINVAL):
                    raise
                msg = (
                    f"{path} is not the lxbsm device (it does not answer lxbsm's status "
                    "request): name the lxbsm node (--device /dev/lxbsm)"
                )
                raise OSError(e.errno, msg) from None
            if st.abi_version != uapi.ABI_VERSION:
                raise RingError(f"module ABI {st.abi_version}, tools ABI {uapi.ABI_VERSION}")
            self.page = st.page_size
            self.size = st.data_size
            self.mask = self.size - 1
            self._cmm = mmap.mmap(
                self.fd, self.page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
            )
            self._pmm = mmap.mmap(
                self.fd,
                self.page + 2 * self.size,
                mmap.MAP_SHARED,
                mmap.PROT_READ,
                offset=self.page,
            )
        except BaseException:
            os.close(self.fd)
            raise
        self._cons = memoryview(self._cmm).cast("Q")
        self._prod = memoryview(self._pmm)[: self.page].cast("Q")
        self._data = memoryview(self._pmm)[self.page :]
        self._hdr = self._data.cast("I")
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    @property
    def consumer_pos(self) -> int:
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        return int(self._prod[0])

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a record may be available; False on timeout."""
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(self._poll.poll(ms))

    def batch(self, max_bytes: int = 1 << 62) -> tuple[list[memoryview], int]:
        """Whole committed BSM records from the consumer position, without consuming them.

        Returns zero-copy views of at most ``max_bytes`` of records (at least
        one when any is ready) and the position just after the last one; hand
        that to :meth:`commit` once the records are safely elsewhere.  Stops at
        the first record still being written.
        """
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

    def copy_batch(self, max_bytes: int) -> tuple[bytes, int, int]:
        """What :meth:`batch` gives, copied by the kernel (LXBSM_IOC_COPY) into one buffer.

        Returns the records one after the other (as a trail holds them),
        their number, and the position to hand to :meth:`commit`; the walk
        over the record headers is the kernel's, not Python's, so a batch
        costs one system call however many records it holds.  ``max_bytes``
        is raised to MAX_RECORD so that any record fits.
        """
        size = max(max_bytes, uapi.MAX_RECORD)
        if self._copy_buf is None or len(self._copy_buf) != size:
            self._copy_buf = ctypes.create_string_buffer(size)
        try:
            n, nbytes, end = uapi.copy_records(self.fd, self._copy_buf)
        except OSError as e:
            if e.errno == errno.EIO:
                raise RingError(f"consumer position {self.consumer_pos} is not a record") from None
            raise
        return ctypes.string_at(self._copy_buf, nbytes), n, end

    def commit(self, pos: int) -> None:
        """Give the space before ``pos`` (from :meth:`batch`) back to the kernel."""
        self._cons[0] = pos

    def pending(self) -> bool:
        """Is anything (committed or not) between the consumer and the producer?"""
        return int(self._prod[0]) != int(self._cons[0])

    def records(self) -> Iterator[memoryview]:
        """Yield every committed BSM record now in the ring, oldest first.

        Each item is a zero-copy view into the ring, valid until the next
        item is requested: that is when the record counts as consumed and
        its space is handed back to the kernel.  Stops at the first record
        still being written.
        """
        while True:
            views, end = self.batch(1)
            if not views:
                if end != self._cons[0]:
                    self.commit(end)  # only skipped (discarded) records
                return
            yield views[0]
            self.commit(end)

    def read(self, timeout: float | None = None) -> list[bytes]:
        """Wait up to @timeout for records and return copies of those available."""
        out = [bytes(r) for r in self.records()]
        if not out and self.wait(timeout):
            out = [bytes(r) for r in self.records()]
        return out

    def status(self) -> uapi.ModuleStatus:
        return uapi.get_status(self.fd)

    def close(self) -> None:
        if self.fd < 0:
            return
        for view in (self._cons, self._prod, self._hdr, self._data):
            view.release()
        for m in (self._cmm, self._pmm):
            try:
                m.close()
            except BufferError:
                # A caller still holds a record view: the mapping goes away
                # with the last reference instead.
                pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Ring:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
