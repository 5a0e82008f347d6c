"""Trail files, named and handled the way OpenBSM's auditd does it.

* An open trail is ``<start>.not_terminated`` (``.<host>`` appended when
  audit_control sets ``host:``); closing renames it ``<start>.<end>``.
  Times are UTC ``YYYYMMDDHHMMSS``.  Each trail starts with a file token
  naming the trail before it and ends with one naming the trail after it
  (an empty name when there is none), as Solaris' binfile does.
* ``<first dir>/current`` is a symlink to the open trail.
* A trail left open by a crash is renamed ``<start>.crash_recovery``.
* A small journal (``.lxbsm-auditd.journal`` in the trail's directory)
  records, before every write, where the batch goes in the trail and where
  it came from in the ring, so that a restarted daemon can tell a batch that
  reached the trail (skip it in the ring) from one that did not, and cut a
  torn one off.
* A write that fails (disk full) is cut back to the last whole record.
"""

from __future__ import annotations

import calendar
import errno
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxbsm_tools.bsm import encode_file_token

from .config import Expiry

STAMP = "%Y%m%d%H%M%S"
TRAIL_RE = re.compile(r"(\d{14})\.(\d{14}|not_terminated|crash_recovery)(?:\.(.+))?")
JOURNAL = ".lxbsm-auditd.journal"
_JFMT = struct.Struct("<8sQQQQ256s")
_JMAGIC = b"LXBSMJ01"
CURRENT = "current"


def trail_entries(dirs: Sequence[str]) -> list[tuple[os.DirEntry[str], re.Match[str]]]:
    """The trails (regular files named as TRAIL_RE says) in ``dirs``, with their
    name's match; a directory that cannot be read is passed over."""
    out = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            m = TRAIL_RE.fullmatch(e.name)
            try:
                if m and e.is_file(follow_symlinks=False):
                    out.append((e, m))
            except OSError:
                continue
    return out


def stamp(t: float) -> str:
    return time.strftime(STAMP, time.gmtime(t))


def parse_stamp(s: str) -> int:
    return calendar.timegm(time.strptime(s, STAMP))


def now_ms() -> tuple[int, int]:
    t = time.time()
    return int(t), int(t * 1000) % 1000


class DiskFull(OSError):
    """A batch did not fit; the trail was cut back to its last whole record."""


@dataclass(frozen=True)
class Journal:
    trail: str  # file name (in the journal's directory)
    start: int  # trail offset of the batch
    end: int  # trail offset after the batch
    ring_start: int
    ring_end: int

    def pack(self) -> bytes:
        return _JFMT.pack(
            _JMAGIC, self.start, self.end, self.ring_start, self.ring_end, self.trail.encode()
        )

    @classmethod
    def read(cls, directory: str | Path) -> Journal | None:
        try:
            data = (Path(directory) / JOURNAL).read_bytes()
        except OSError:
            return None
        if len(data) < _JFMT.size:
            return None
        magic, start, end, rs, re_, name = _JFMT.unpack_from(data)
        if magic != _JMAGIC:
            return None
        return cls(name.rstrip(b"\0").decode(), start, end, rs, re_)


def free_percent(directory: str) -> float:
    st = os.statvfs(directory)
    return 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 0.0


def open_trails(dirs: Sequence[str]) -> list[Path]:
    """Trails still named ``*.not_terminated*``: left open by a daemon that died."""
    found: set[Path] = set()
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            m = TRAIL_RE.fullmatch(n)
            if m and m.group(2) == "not_terminated":
                found.add(Path(d) / n)
    return sorted(found)


def recovered_name(path: Path) -> Path:
    m = TRAIL_RE.fullmatch(path.name)
    assert m is not None
    host = f".{m.group(3)}" if m.group(3) else ""
    return path.with_name(f"{m.group(1)}.crash_recovery{host}")


class TrailWriter:
    """The open trail: batched writes, rotation, closing, directory choice."""

    def __init__(
        self,
        dirs: Sequence[str],
        *,
        host: str | None = None,
        filesz: int = 0,
        minfree: int = 0,
        flush: str = "none",
        freq: int = 100,
        warn: Callable[[str, str], None] = lambda kind, arg: None,
    ) -> None:
        self.dirs = list(dirs)
        self.host = host
        self.filesz = filesz
        self.minfree = minfree
        self.flush = flush
        self.freq = freq
        self.warn = warn
        self.fd = -1
        self.jfd = -1
        self.path: Path | None = None
        self.start = 0
        self.size = 0
        self.records_since_flush = 0
        self.last_closed: str = ""
        self.warned: set[tuple[str, str]] = set()

    # -- naming and directories ---------------------------------------------

    def _name(self, start: int, end: str) -> str:
        return f"{stamp(start)}.{end}" + (f".{self.host}" if self.host else "")

    def pick_dir(self, avoid: str | None = None) -> str:
        """The first directory with at least minfree percent free."""
        usable = []
        for d in self.dirs:
            try:
                pct = free_percent(d)
            except OSError:
                continue
            usable.append(d)
            if pct >= self.minfree and d != avoid:
                return d
        if avoid is None or len(usable) <= 1:
            self._warn_once("allsoft", "")
        return usable[0] if usable else self.dirs[0]

    def _warn_once(self, kind: str, arg: str) -> None:
        if (kind, arg) not in self.warned:
            self.warned.add((kind, arg))
            self.warn(kind, arg)

    def space_low(self) -> bool:
        """The open trail's directory is below minfree and another one is not."""
        if self.path is None or self.minfree == 0:
            return False
        d = str(self.path.parent)
        try:
            if free_percent(d) >= self.minfree:
                return False
        except OSError:
            return False
        self._warn_once("soft", d)
        return self.pick_dir(avoid=d) != d

    # -- life cycle ----------------------------------------------------------

    def open(self, directory: str | None = None) -> Path:
        """Open a new trail (the previous one must be closed)."""
        d = directory or self.pick_dir()
        start = max(int(time.time()), self.start + 1)
        path = Path(d) / self._name(start, "not_terminated")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            os.fchmod(fd, 0o640)
        except OSError as e:
            os.close(fd)
            raise OSError(e.errno, f"fchmod 0640: {e.strerror}", str(path)) from None
        self.fd, self.path, self.start, self.size = fd, path, start, 0
        if self.jfd >= 0:
            os.close(self.jfd)
        self.jfd = os.open(Path(d) / JOURNAL, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            self._write_all(encode_file_token(self.last_closed, time=now_ms()))
        except DiskFull:
            pass
        self._link(path)
        return path

    def _link(self, target: Path | None) -> None:
        link = Path(self.dirs[0]) / CURRENT
        try:
            if target is None:
                link.unlink(missing_ok=True)
                return
            tmp = link.with_name(f".{CURRENT}.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.rename(tmp, link)
        except OSError as e:
            self.warn("link", f"{link}: {e.strerror}")

    def close(self, next_path: str = "") -> str:
        """Write the closing file token, close and rename; the final path."""
        assert self.path is not None
        try:
            self._write_all(encode_file_token(next_path, time=now_ms()))
        except DiskFull:
            pass
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        end = max(int(time.time()), self.start)
        final = self.path.with_name(self._name(self.start, stamp(end)))
        os.rename(self.path, final)
        self.fd, self.path = -1, None
        self.last_closed = str(final)
        return str(final)

    def rotate(self, directory: str | None = None) -> tuple[str, Path]:
        """Close the open trail and open the next: (closed path, new path)."""
        d = directory or self.pick_dir()
        nxt_start = max(int(time.time()), self.start + 1)
        nxt = Path(d) / self._name(nxt_start, "not_terminated")
        closed = self.close(str(nxt))
        return closed, self.open(d)

    def shutdown(self) -> str:
        closed = self.close("")
        self._link(None)
        if self.jfd >= 0:
            os.close(self.jfd)
            self.jfd = -1
        return closed

    # -- writing ---------------------------------------------------------------

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as e:
            if done:
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"{self.path}: {e.strerror}") from None
            raise
        self.size += len(view)

    def write(self, data: bytes, records: int, ring_start: int, ring_end: int) -> None:
        """Append a batch of whole records; DiskFull leaves the trail as it was."""
        assert self.path is not None
        j = Journal(self.path.name, self.size, self.size + len(data), ring_start, ring_end)
        os.pwrite(self.jfd, j.pack(), 0)
        self._write_all(data)
        self.records_since_flush += records
        if self.flush == "sync":
            os.fsync(self.fd)
        elif self.flush == "data" or (
            self.flush == "incremental" and self.records_since_flush >= self.freq
        ):
            os.fdatasync(self.fd)
            self.records_since_flush = 0

    def full(self) -> bool:
        return bool(self.filesz) and self.size >= self.filesz

    # -- expiry ------------------------------------------------------------------

    def expire(self, policy: Expiry | None, now: float | None = None) -> list[str]:
        """Remove the oldest closed trails as ``expire-after`` says; the removed paths."""
        if policy is None:
            return []
        now = time.time() if now is None else now
        closed: list[tuple[float, Path, int]] = []
        total = 0
        for e, m in trail_entries(self.dirs):
            size = e.stat(follow_symlinks=False).st_size
            total += size
            if m.group(2) == "not_terminated":
                continue
            end = (
                parse_stamp(m.group(2))
                if m.group(2).isdigit()
                else e.stat(follow_symlinks=False).st_mtime
            )
            closed.append((end, Path(e.path), size))
        removed = []
        for end, path, size in sorted(closed):
            if not policy.expired(now - end, total):
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed.append(str(path))
        return removed
