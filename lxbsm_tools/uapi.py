"""The /dev/lxbsm ABI (kmod/include/uapi/lxbsm.h) for Python.

tests/host/test_uapi.py compiles the C header and checks that every size,
offset and ioctl number here matches it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from dataclasses import dataclass

ABI_VERSION = 1
DEVICE = "/dev/lxbsm"

REC_BUSY = 1 << 31
REC_DISCARD = 1 << 30
REC_LEN_MASK = ~(REC_BUSY | REC_DISCARD) & 0xFFFFFFFF
REC_HDR_SIZE = 8
REC_BSM = 1
MAX_RECORD = 32767

LOST_NR = 8
LOST_REASONS = ("ring_full", "too_big", "no_scratch", "fault")
HOOKS_MAX = 32


class ConsumerPage(ctypes.Structure):
    _fields_ = [("consumer_pos", ctypes.c_uint64)]


class ProducerPage(ctypes.Structure):
    _fields_ = [
        ("producer_pos", ctypes.c_uint64),
        ("data_size", ctypes.c_uint64),
        ("abi_version", ctypes.c_uint32),
        ("hdr_size", ctypes.c_uint32),
        ("records", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("lost", ctypes.c_uint64 * LOST_NR),
    ]


class Status(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("struct_size", ctypes.c_uint32),
        ("version", ctypes.c_char * 32),
        ("page_size", ctypes.c_uint64),
        ("data_size", ctypes.c_uint64),
        ("producer_pos", ctypes.c_uint64),
        ("consumer_pos", ctypes.c_uint64),
        ("high_water", ctypes.c_uint64),
        ("records", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("lost", ctypes.c_uint64 * LOST_NR),
        ("submitted", ctypes.c_uint64),
        ("table_entries", ctypes.c_uint64),
        ("consumer_open", ctypes.c_uint32),
        ("nr_hooks", ctypes.c_uint32),
        ("missed", ctypes.c_uint64 * HOOKS_MAX),
    ]


class Submit(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_uint64), ("len", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0xB5 << 8) | nr


_IOC_WRITE, _IOC_READ = 1, 2
IOC_STATUS = _ioc(_IOC_READ, 1, ctypes.sizeof(Status))
IOC_SUBMIT = _ioc(_IOC_WRITE, 2, ctypes.sizeof(Submit))


@dataclass(frozen=True)
class ModuleStatus:
    """What LXBSM_IOC_STATUS reports, as plain Python values."""

    abi_version: int
    version: str
    page_size: int
    data_size: int
    producer_pos: int
    consumer_pos: int
    high_water: int
    records: int
    bytes: int
    lost: dict[str, int]
    submitted: int
    table_entries: int
    consumer_open: bool
    missed: tuple[int, ...]

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


def get_status(fd: int) -> ModuleStatus:
    buf = bytearray(ctypes.sizeof(Status))
    fcntl.ioctl(fd, IOC_STATUS, buf, True)
    st = Status.from_buffer(buf)
    return ModuleStatus(
        abi_version=st.abi_version,
        version=st.version.decode(),
        page_size=st.page_size,
        data_size=st.data_size,
        producer_pos=st.producer_pos,
        consumer_pos=st.consumer_pos,
        high_water=st.high_water,
        records=st.records,
        bytes=st.bytes,
        lost={name: st.lost[i] for i, name in enumerate(LOST_REASONS)},
        submitted=st.submitted,
        table_entries=st.table_entries,
        consumer_open=bool(st.consumer_open),
        missed=tuple(st.missed[: st.nr_hooks]),
    )


def submit(fd: int, record: bytes) -> None:
    """Hand one whole BSM record to the kernel (CAP_AUDIT_WRITE); OSError on refusal."""
    buf = ctypes.create_string_buffer(record, len(record))
    req = Submit(buf=ctypes.addressof(buf), len=len(record), flags=0)
    fcntl.ioctl(fd, IOC_SUBMIT, bytes(req))


def open_control(path: str = DEVICE) -> int:
    """Open the device for status and control (not as the consumer)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
