"""The ring: mapping rules, one consumer, submit, order, wrap-around, loss, poll."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import time

import pytest

from lxbsm_tools import uapi
from lxbsm_tools.ring import Ring

from .conftest import DEVICE, load_module


def submit(record: bytes) -> None:
    fd = uapi.open_control()
    try:
        uapi.submit(fd, record)
    finally:
        os.close(fd)


def unmark(record: bytes) -> bytes:
    """A record this process submitted, as it submitted it (the module's text checked)."""
    split = uapi.split_submitted(record)
    assert split is not None, "a submitted record came back without the submitter text"
    assert f"pid {os.getpid()} " in split[1], split[1]
    return split[0]


def split_copy(data: bytes) -> list[bytes]:
    """Whole records, back to back as LXBSM_IOC_COPY gives them, cut by their byte counts."""
    out, off = [], 0
    while off < len(data):
        n = int.from_bytes(data[off + 1 : off + 5], "big")
        out.append(data[off : off + n])
        off += n
    return out


def discard(ring: Ring) -> None:
    """Consume whatever earlier tests left in the ring."""
    for r in ring.records():
        r.release()


def drain(ring: Ring) -> list[bytes]:
    """The submitted records in the ring, as their submitter (this process) gave them."""
    return [unmark(bytes(r)) for r in ring.records()]


def test_single_consumer() -> None:
    with Ring():
        with pytest.raises(OSError) as e:
            Ring()
        assert e.value.errno == errno.EBUSY
        fd = uapi.open_control()
        assert uapi.get_status(fd).consumer_open
        os.close(fd)
    with Ring():  # released on close
        pass


def test_producer_pages_are_read_only() -> None:
    with Ring() as ring:
        with pytest.raises(PermissionError):
            mmap.mmap(
                ring.fd,
                mmap.PAGESIZE,
                mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
                offset=mmap.PAGESIZE,
            )
        # mprotect() cannot make a read-only mapping writable either.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        addr = libc.mmap(
            None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, ring.fd, mmap.PAGESIZE
        )
        assert addr not in (None, ctypes.c_void_p(-1).value)
        rc = libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE)
        err = ctypes.get_errno()
        libc.munmap(addr, mmap.PAGESIZE)
        assert rc == -1 and err == errno.EACCES
        # Nothing past the doubled data area can be mapped.
        with pytest.raises(OSError):
            mmap.mmap(
                ring.fd,
                mmap.PAGESIZE * 2 + 2 * ring.size,
                mmap.MAP_SHARED,
                mmap.PROT_READ,
                offset=mmap.PAGESIZE,
            )


def test_submitted_records_come_back_identical_and_in_order(
    reference_records: list[bytes],
) -> None:
    with Ring() as ring:
        discard(ring)
        before = ring.status()
        for rec in reference_records:
            submit(rec)
        marked = [bytes(r) for r in ring.records()]
        after = ring.status()
    # Each comes back as submitted, with the module's text naming the submitter.
    assert [unmark(r) for r in marked] == reference_records
    assert after.submitted - before.submitted == len(reference_records)
    assert after.records - before.records == len(reference_records)
    assert after.bytes - before.bytes == sum(map(len, marked))
    assert after.consumer_pos == after.producer_pos


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r[:-1],  # trailer count no longer matches
        lambda r: b"\x28" + r[1:],  # not a header token
        lambda r: r[:-7] + b"\x13\xb1\x06" + r[-4:],  # bad trailer magic
        lambda r: r[:1] + (len(r) + 1).to_bytes(4, "big") + r[5:],  # header count off
    ],
    ids=["short", "no-header", "bad-magic", "bad-count"],
)
def test_malformed_submissions_are_refused(reference_records: list[bytes], mangle) -> None:  # type: ignore[no-untyped-def]
    fd = uapi.open_control()
    try:
        with pytest.raises(OSError) as e:
            uapi.submit(fd, mangle(reference_records[0]))
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_wrap_around_keeps_records_whole(reference_records: list[bytes]) -> None:
    load_module("ring_size_kb=64")
    with Ring() as ring:
        assert ring.size == 64 * 1024
        sent: list[bytes] = []
        got: list[bytes] = []
        # Ten times around a 64 KiB ring, with records of varying length
        # so that some straddle the end of the data area.
        i = 0
        while ring.producer_pos < 10 * ring.size:
            rec = reference_records[i % len(reference_records)]
            submit(rec)
            sent.append(rec)
            i += 1
            if i % 50 == 0:
                got += drain(ring)
        got += drain(ring)
        assert got == sent


def test_copy_gives_the_records_the_walk_gives(reference_records: list[bytes]) -> None:
    """LXBSM_IOC_COPY (the daemon's path) against the mmap walk, around a small ring."""
    load_module("ring_size_kb=64")
    with Ring() as ring:
        sent: list[bytes] = []
        got = b""
        batches = 0
        i = 0
        while ring.producer_pos < 5 * ring.size:
            for _ in range(40):
                rec = reference_records[i % len(reference_records)]
                submit(rec)
                sent.append(rec)
                i += 1
            start = ring.consumer_pos
            views, walk_end = ring.batch(8192)
            walked = b"".join(views)
            for v in views:
                v.release()  # else the mapping outlives the ring, and the module stays in use
            data, n, end = ring.copy_batch(8192)
            assert (data, n, end) == (walked, len(views), walk_end)
            assert ring.consumer_pos == start  # copying does not consume
            ring.commit(end)
            got += data
            batches += 1
            while ring.pending():
                data, n, end = ring.copy_batch(8192)
                got += data
                ring.commit(end)
        assert [unmark(r) for r in split_copy(got)] == sent
        assert batches >= 5
        # Nothing pending: nothing copied, the position stays.
        assert ring.copy_batch(8192) == (b"", 0, ring.consumer_pos)
        # The first record must fit; a record boundary must be where the reader says.
        submit(reference_records[0])
        tiny = ctypes.create_string_buffer(8)
        with pytest.raises(OSError) as e:
            uapi.copy_records(ring.fd, tiny)
        assert e.value.errno == errno.EMSGSIZE
        pos = ring.consumer_pos
        for bad in (pos + 4, pos + ring.size + 8):
            ring.commit(bad)
            with pytest.raises(OSError) as e:
                uapi.copy_records(ring.fd, tiny)
            assert e.value.errno == errno.EIO
        ring.commit(pos)
        data, n, _ = ring.copy_batch(0)
        assert (unmark(data), n) == (reference_records[0], 1)
    # Only the consumer may copy.
    fd = uapi.open_control()
    try:
        with pytest.raises(OSError) as e:
            uapi.copy_records(fd, ctypes.create_string_buffer(uapi.MAX_RECORD))
        assert e.value.errno == errno.EACCES
    finally:
        os.close(fd)


def test_overflow_counts_every_lost_record_exactly(reference_records: list[bytes]) -> None:
    load_module("ring_size_kb=64")
    rec = max(reference_records, key=len)
    fd = uapi.open_control()
    ok = refused = 0
    try:
        while refused < 100:
            try:
                uapi.submit(fd, rec)
                ok += 1
            except OSError as e:
                assert e.errno == errno.ENOSPC
                refused += 1
        st = uapi.get_status(fd)
    finally:
        os.close(fd)
    assert st.lost["ring_full"] == refused
    assert st.records == ok
    with Ring() as ring:
        assert len(drain(ring)) == ok


def test_poll_wakes_the_reader(reference_records: list[bytes]) -> None:
    with Ring() as ring:
        discard(ring)
        assert not ring.wait(0.05)
        woke: list[float] = []

        def reader() -> None:
            if ring.wait(10):
                woke.append(time.monotonic())

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        sent = time.monotonic()
        submit(reference_records[0])
        t.join(12)
        assert woke, "poll() did not return after a record was submitted"
        assert woke[0] - sent < 5
        assert drain(ring) == [reference_records[0]]


def test_killed_reader_loses_nothing(reference_records: list[bytes]) -> None:
    with Ring() as ring:
        discard(ring)
    for rec in reference_records[:5]:
        submit(rec)
    # A reader that takes two records and dies before taking more.
    code = (
        "from lxbsm_tools.ring import Ring\n"
        "import os\n"
        "r = Ring()\n"
        "it = r.records()\n"
        "next(it); next(it); next(it)\n"  # the third next() consumes the second
        "os._exit(9)\n"
    )
    pid = os.fork()
    if pid == 0:
        os.execvp("python3", ["python3", "-c", code])
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9
    with Ring() as ring:
        assert drain(ring) == reference_records[2:5]
    assert os.path.exists(DEVICE)
