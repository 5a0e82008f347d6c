"""The /dev/lxbsm ABI (kmod/include/uapi/lxbsm.h) for Python.

tests/host/test_uapi.py compiles the C header and checks that every size,
offset and ioctl number here matches it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

ABI_VERSION = 5  # kmod/include/uapi/lxbsm.h
DEVICE = "/dev/lxbsm"

REC_BUSY = 1 << 31
REC_DISCARD = 1 << 30
REC_LEN_MASK = ~(REC_BUSY | REC_DISCARD) & 0xFFFFFFFF
REC_HDR_SIZE = 8
REC_BSM = 1
MAX_RECORD = 32767
# The text the module puts before the trailer of every submitted record.
SUBMITTED_TEXT = "lxbsm: submitted from user space by"
SUBMITTED_TEXT_MAX = 128
MAX_SUBMIT = MAX_RECORD - 3 - SUBMITTED_TEXT_MAX

LOST_NR = 8
LOST_REASONS = ("ring_full", "too_big", "no_scratch", "no_instance")


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
        ("table_alloc_failed", ctypes.c_uint64),
        ("waited", ctypes.c_uint64),
        ("consumer_open", ctypes.c_uint32),
        ("can_wait", ctypes.c_uint32),
        ("nr_hooks", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("missed", ctypes.c_uint64),
    ]


class Submit(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_uint64), ("len", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class Copy(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_uint64),
        ("buf_size", ctypes.c_uint32),
        ("records", ctypes.c_uint32),
        ("bytes", ctypes.c_uint64),
        ("end_pos", ctypes.c_uint64),
    ]


class Mask(ctypes.Structure):
    _fields_ = [("success", ctypes.c_uint32), ("failure", ctypes.c_uint32)]


class EventClass(ctypes.Structure):
    _fields_ = [("event", ctypes.c_uint32), ("classes", ctypes.c_uint32)]


class UserMask(ctypes.Structure):
    _fields_ = [
        ("auid", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("always", Mask),
        ("never", Mask),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("policy", ctypes.c_uint32),
        ("nr_events", ctypes.c_uint32),
        ("nr_users", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("flags", Mask),
        ("naflags", Mask),
        ("events", ctypes.c_uint64),
        ("users", ctypes.c_uint64),
    ]


class HookInfo(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("state", ctypes.c_uint32),
        ("missed", ctypes.c_uint64),
        ("hits", ctypes.c_uint64),
        ("name", ctypes.c_char * 48),
    ]


class HookCostInfo(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("on", ctypes.c_uint32),
        ("entry_calls", ctypes.c_uint64),
        ("entry_ns", ctypes.c_uint64),
        ("ret_calls", ctypes.c_uint64),
        ("ret_ns", ctypes.c_uint64),
        ("records", ctypes.c_uint64),
        ("build_ns", ctypes.c_uint64),
        ("ring_ns", ctypes.c_uint64),
        ("name", ctypes.c_char * 48),
    ]


XC_PATH_LEN = 256
XC_MAX_RULES = 4096
XC_INODE = 0x1
XC_SHA256 = 0x2
XC_MODES = ("off", "enforce", "monitor", "kill")
XC_ACTIONS = ("allow", "deny")
XC_WHO = ("anyone", "uid", "gid", "auid")


class XcRule(ctypes.Structure):
    _fields_ = [
        ("action", ctypes.c_uint32),
        ("who", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("line", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("dev", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
        ("path", ctypes.c_char * XC_PATH_LEN),
        ("sha256", ctypes.c_uint8 * 32),
    ]


class XcConfig(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_uint32),
        ("nr_rules", ctypes.c_uint32),
        ("rules", ctypes.c_uint64),
        ("hits", ctypes.c_uint64),
        ("denied", ctypes.c_uint64),
    ]


class FileId(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
        ("dev", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
    ]


PROTECT_MAX = 16  # LXBSM_PROTECT_MAX: trees in one LXBSM_IOC_SET_PROTECT
PROTECT_CHUNK = 16384  # LXBSM_PROTECT_CHUNK: data bytes in one AUE_LXBSM_JWRITE record


class Protect(ctypes.Structure):
    _fields_ = [
        ("nr_trees", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("fd", ctypes.c_int32 * PROTECT_MAX),
    ]


class ProtectStatusInfo(ctypes.Structure):
    _fields_ = [
        ("nr_trees", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("records", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("lost", ctypes.c_uint64),
    ]


POLICY_CNT = 0x0001
POLICY_ARGV = 0x0004
POLICY_ARGE = 0x0008
POLICY_SEQ = 0x0010
POLICY_NAMES = {"cnt": POLICY_CNT, "argv": POLICY_ARGV, "arge": POLICY_ARGE, "seq": POLICY_SEQ}
HOOK_STATES = ("off", "on", "missing", "idle")
LXBSM_MAX_USERS_GET = 4096  # audit_user entries read back by get_config()


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0xB5 << 8) | nr


_IOC_WRITE, _IOC_READ = 1, 2
IOC_STATUS = _ioc(_IOC_READ, 1, ctypes.sizeof(Status))
IOC_SUBMIT = _ioc(_IOC_WRITE, 2, ctypes.sizeof(Submit))
IOC_SET_CONFIG = _ioc(_IOC_WRITE, 3, ctypes.sizeof(Config))
IOC_GET_CONFIG = _ioc(_IOC_READ | _IOC_WRITE, 4, ctypes.sizeof(Config))
IOC_HOOK_INFO = _ioc(_IOC_READ | _IOC_WRITE, 5, ctypes.sizeof(HookInfo))
IOC_SET_EXEC_RULES = _ioc(_IOC_WRITE, 6, ctypes.sizeof(XcConfig))
IOC_GET_EXEC_RULES = _ioc(_IOC_READ | _IOC_WRITE, 7, ctypes.sizeof(XcConfig))
IOC_FILE_ID = _ioc(_IOC_READ | _IOC_WRITE, 8, ctypes.sizeof(FileId))
IOC_COPY = _ioc(_IOC_READ | _IOC_WRITE, 9, ctypes.sizeof(Copy))
_Indexed = TypeVar("_Indexed", HookInfo, HookCostInfo)
IOC_HOOK_COST = _ioc(_IOC_READ | _IOC_WRITE, 10, ctypes.sizeof(HookCostInfo))
IOC_SET_PROTECT = _ioc(_IOC_WRITE, 11, ctypes.sizeof(Protect))
IOC_PROTECT_STATUS = _ioc(_IOC_READ, 12, ctypes.sizeof(ProtectStatusInfo))
COST_PARAM = "/sys/module/lxbsm/parameters/cost"


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
    table_alloc_failed: int
    waited: int
    consumer_open: bool
    can_wait: bool
    missed: int  # calls every hook missed, in all (per hook: hooks())

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
        table_alloc_failed=st.table_alloc_failed,
        waited=st.waited,
        consumer_open=bool(st.consumer_open),
        can_wait=bool(st.can_wait),
        missed=st.missed,
    )


def submit(fd: int, record: bytes) -> None:
    """Hand one whole BSM record to the kernel (CAP_AUDIT_WRITE); OSError on refusal."""
    buf = ctypes.create_string_buffer(record, len(record))
    req = Submit(buf=ctypes.addressof(buf), len=len(record), flags=0)
    fcntl.ioctl(fd, IOC_SUBMIT, bytes(req))


def split_submitted(record: bytes) -> tuple[bytes, str] | None:
    """A record as its submitter gave it, and the module's text naming the submitter.

    None if ``record`` does not end in the module's submitter text token
    (records the module made itself never do).
    """
    if len(record) < 18 + 3 + 7 or record[-7] != 0x13:
        return None
    end = len(record) - 7
    # The text token is the last before the trailer: id, length, string, NUL.
    start = record.rfind(b"\x28", 0, end - 3)
    while start >= 0:
        n = int.from_bytes(record[start + 1 : start + 3], "big")
        if start + 3 + n == end:
            text = record[start + 3 : end - 1].decode("utf-8", "replace")
            if not text.startswith(SUBMITTED_TEXT):
                return None
            size = start + 7
            orig = record[:1] + size.to_bytes(4, "big") + record[5:start]
            return orig + b"\x13\xb1\x05" + size.to_bytes(4, "big"), text
        start = record.rfind(b"\x28", 0, start)
    return None


def copy_records(fd: int, buf: ctypes.Array[ctypes.c_char]) -> tuple[int, int, int]:
    """LXBSM_IOC_COPY into @buf (the consumer's fd): (records, bytes, end position)."""
    req = Copy(buf=ctypes.addressof(buf), buf_size=len(buf))
    fcntl.ioctl(fd, IOC_COPY, req)
    return req.records, req.bytes, req.end_pos


def open_control(path: str = DEVICE) -> int:
    """Open the device for status and control (not as the consumer)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@dataclass(frozen=True)
class KernelConfig:
    """The module's pre-selection configuration (LXBSM_IOC_SET_CONFIG)."""

    policy: int
    flags: tuple[int, int]  # (success, failure) class masks
    naflags: tuple[int, int]
    events: dict[int, int]  # AUE number -> classes
    users: dict[int, tuple[tuple[int, int], tuple[int, int]]]  # auid -> (always, never)


def set_config(fd: int, cfg: KernelConfig) -> None:
    """Replace the module's whole pre-selection configuration."""
    events = (EventClass * max(1, len(cfg.events)))(
        *(EventClass(event=e, classes=c) for e, c in cfg.events.items())
    )
    users = (UserMask * max(1, len(cfg.users)))(
        *(
            UserMask(auid=a, always=Mask(*always), never=Mask(*never))
            for a, (always, never) in cfg.users.items()
        )
    )
    req = Config(
        policy=cfg.policy,
        nr_events=len(cfg.events),
        nr_users=len(cfg.users),
        flags=Mask(*cfg.flags),
        naflags=Mask(*cfg.naflags),
        events=ctypes.addressof(events),
        users=ctypes.addressof(users),
    )
    fcntl.ioctl(fd, IOC_SET_CONFIG, bytes(req))


def get_config(fd: int) -> KernelConfig:
    """The configuration in force, with the classes of every event the module emits."""
    events = (EventClass * 256)()
    users = (UserMask * LXBSM_MAX_USERS_GET)()
    req = Config(
        nr_events=256,
        nr_users=LXBSM_MAX_USERS_GET,
        events=ctypes.addressof(events),
        users=ctypes.addressof(users),
    )
    buf = bytearray(bytes(req))
    fcntl.ioctl(fd, IOC_GET_CONFIG, buf, True)
    got = Config.from_buffer(buf)
    return KernelConfig(
        policy=got.policy,
        flags=(got.flags.success, got.flags.failure),
        naflags=(got.naflags.success, got.naflags.failure),
        events={events[i].event: events[i].classes for i in range(min(256, got.nr_events))},
        users={
            users[i].auid: (
                (users[i].always.success, users[i].always.failure),
                (users[i].never.success, users[i].never.failure),
            )
            for i in range(min(LXBSM_MAX_USERS_GET, got.nr_users))
        },
    )


@dataclass(frozen=True)
class Hook:
    name: str
    state: str
    missed: int
    hits: int


def _by_index(fd: int, request: int, kind: type[_Indexed]) -> Iterator[_Indexed]:
    """Ask @request for index 0, 1, ... until the module says ENOENT (past the last)."""
    index = 0
    while True:
        buf = bytearray(bytes(kind(index=index)))
        try:
            fcntl.ioctl(fd, request, buf, True)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        yield kind.from_buffer(buf)
        index += 1


def hooks(fd: int) -> list[Hook]:
    """Every hook in the module's table, with its state and counters."""
    return [
        Hook(got.name.decode(), HOOK_STATES[got.state], got.missed, got.hits)
        for got in _by_index(fd, IOC_HOOK_INFO, HookInfo)
    ]


@dataclass(frozen=True)
class HookCost:
    """One hook's runs and time (LXBSM_IOC_HOOK_COST); counters only grow."""

    name: str
    entry_calls: int
    entry_ns: int
    ret_calls: int
    ret_ns: int
    records: int
    build_ns: int
    ring_ns: int

    def minus(self, before: HookCost) -> HookCost:
        """What this hook cost since @before (an earlier reading)."""
        return HookCost(
            self.name,
            *(getattr(self, f) - getattr(before, f) for f in COST_FIELDS),
        )


COST_FIELDS = (
    "entry_calls",
    "entry_ns",
    "ret_calls",
    "ret_ns",
    "records",
    "build_ns",
    "ring_ns",
)


def hook_costs(fd: int) -> tuple[bool, list[HookCost]]:
    """Whether cost accounting is on, and every hook's costs, then "(task work)"."""
    got = list(_by_index(fd, IOC_HOOK_COST, HookCostInfo))
    costs = [HookCost(g.name.decode(), *(int(getattr(g, f)) for f in COST_FIELDS)) for g in got]
    return bool(got and got[-1].on), costs


def set_cost_accounting(on: bool) -> None:
    """Switch the module's cost accounting (its cost parameter; root)."""
    with open(COST_PARAM, "w") as f:
        f.write("1" if on else "0")


@dataclass(frozen=True)
class ExecRule:
    """One exec_control rule as the module holds it."""

    action: str  # XC_ACTIONS
    who: str  # XC_WHO
    id: int
    line: int
    path: str  # canonical path, "" for none
    dev: int | None  # st_dev and st_ino of the file, None when not resolved
    ino: int | None
    hits: int = 0  # times it matched (GET only)
    sha256: bytes | None = None  # a content rule: any file with this digest (no path, no inode)


@dataclass(frozen=True)
class ExecRules:
    mode: str  # XC_MODES
    rules: tuple[ExecRule, ...]
    denied: int = 0  # GET only: execs and mappings refused or killed


def file_id(fd: int, path: str) -> tuple[int, int] | None:
    """The (device, inode) the module sees for a file; None if there is no such file.

    stat(2) can report other numbers (overlayfs, btrfs subvolumes), so exec
    control rules are resolved through the module.
    """
    try:
        f = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        buf = bytearray(bytes(FileId(fd=f)))
        fcntl.ioctl(fd, IOC_FILE_ID, buf, True)
    finally:
        os.close(f)
    got = FileId.from_buffer(buf)
    return got.dev, got.ino


def set_exec_rules(fd: int, xc: ExecRules) -> None:
    """Replace the module's exec control rules (CAP_AUDIT_CONTROL).

    Each rule's file is looked up again here, through the module, so that
    the rules name what exists now; a path the module cannot hold (255 bytes
    at most) is matched by inode only.
    """
    arr = (XcRule * max(1, len(xc.rules)))()
    for i, r in enumerate(xc.rules):
        if r.sha256 is not None:
            arr[i] = XcRule(
                action=XC_ACTIONS.index(r.action),
                who=XC_WHO.index(r.who),
                id=r.id,
                line=r.line,
                flags=XC_SHA256,
                sha256=(ctypes.c_uint8 * 32)(*r.sha256),
            )
            continue
        path = r.path.encode("utf-8", "surrogateescape")
        ids = file_id(fd, r.path) if r.path else None
        if ids is None and r.dev is not None and r.ino is not None:
            ids = (r.dev, r.ino)
        if len(path) >= XC_PATH_LEN:
            if ids is None:
                raise ValueError(f"path longer than {XC_PATH_LEN - 1} bytes and no such file")
            path = b""
        dev, ino = ids if ids is not None else (None, None)
        arr[i] = XcRule(
            action=XC_ACTIONS.index(r.action),
            who=XC_WHO.index(r.who),
            id=r.id,
            line=r.line,
            flags=XC_INODE if dev is not None else 0,
            dev=dev or 0,
            ino=ino or 0,
            path=path,
        )
    req = XcConfig(
        mode=XC_MODES.index(xc.mode), nr_rules=len(xc.rules), rules=ctypes.addressof(arr)
    )
    fcntl.ioctl(fd, IOC_SET_EXEC_RULES, bytes(req))


def _read_exec_rules(fd: int, room: int) -> tuple[XcConfig, Any, Any]:
    arr = (XcRule * max(1, room))()
    hits = (ctypes.c_uint64 * max(1, room))()
    req = XcConfig(nr_rules=room, rules=ctypes.addressof(arr), hits=ctypes.addressof(hits))
    buf = bytearray(bytes(req))
    fcntl.ioctl(fd, IOC_GET_EXEC_RULES, buf, True)
    return XcConfig.from_buffer(buf), arr, hits


def get_exec_rules(fd: int) -> ExecRules:
    """The rules in force, with how often each matched."""
    # Ask how many first, so the module copies out only what there is.
    room = min(_read_exec_rules(fd, 0)[0].nr_rules, XC_MAX_RULES)
    got, arr, hits = _read_exec_rules(fd, room)
    rules = tuple(
        ExecRule(
            action=XC_ACTIONS[arr[i].action],
            who=XC_WHO[arr[i].who],
            id=arr[i].id,
            line=arr[i].line,
            path=arr[i].path.decode("utf-8", "surrogateescape"),
            dev=arr[i].dev if arr[i].flags & XC_INODE else None,
            ino=arr[i].ino if arr[i].flags & XC_INODE else None,
            hits=hits[i],
            sha256=bytes(arr[i].sha256) if arr[i].flags & XC_SHA256 else None,
        )
        for i in range(min(got.nr_rules, room))
    )
    return ExecRules(XC_MODES[got.mode], rules, got.denied)


def set_protect(fd: int, trees: list[int]) -> None:
    """Replace the protected trees (LXBSM_IOC_SET_PROTECT, CAP_AUDIT_CONTROL):
    @trees are descriptors of directories (O_PATH will do); none turns
    protection off.  ValueError for more than PROTECT_MAX; OSError (EBADF,
    ENOTDIR, EINVAL) from the module."""
    if len(trees) > PROTECT_MAX:
        raise ValueError(f"{len(trees)} protected trees: the module takes at most {PROTECT_MAX}")
    req = Protect(nr_trees=len(trees))
    for i, t in enumerate(trees):
        req.fd[i] = t
    fcntl.ioctl(fd, IOC_SET_PROTECT, bytes(req))


@dataclass(frozen=True)
class ProtectStatus:
    """What LXBSM_IOC_PROTECT_STATUS reports."""

    nr_trees: int  # trees in force
    records: int  # journal records put in the ring
    bytes: int  # file data in them
    lost: int  # changes not captured


def protect_status(fd: int) -> ProtectStatus:
    buf = bytearray(ctypes.sizeof(ProtectStatusInfo))
    fcntl.ioctl(fd, IOC_PROTECT_STATUS, buf, True)
    st = ProtectStatusInfo.from_buffer(buf)
    return ProtectStatus(st.nr_trees, st.records, st.bytes, st.lost)
