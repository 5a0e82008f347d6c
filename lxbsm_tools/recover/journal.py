"""The change journal of protected files: its entries and their file format.

An entry is the paper's log entry (file id, time, session id, start offset,
end offset, size, data) with what lxbsm knows beside the session: the audit
id, the terminal, the BSM event, and the path(s) the change was made by
(docs/recovery.md).  ``data`` is what the file holds in [start, end) after
the change and ``size`` the file's size after it, so that replaying entries
in order rebuilds every state the file went through.

On disk a journal file is a sequence of frames, each checked on its own::

    magic "LXJ1" | u32 body length | u32 CRC-32 of the body | body

so that a damaged frame is reported with the file and its offset and reading
goes on at the next frame that checks (nothing after a damage is lost).
Integers are little-endian.  Paths are bytes: any byte but NUL, up to 4096.
"""

from __future__ import annotations

import enum
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"LXJ1"
_FRAME = struct.Struct("<4sII")
# seq, time_ns, kind, mode, uid, gid, auid, asid, fid, start, end, size,
# then the lengths of path, path2, terminal, event and data.
_BODY = struct.Struct("<QqBIIIIIQQQQHHHHI")
PATH_MAX = 4096
MAX_BODY = 64 << 20  # a longer frame is damage, not an entry
AUDIT_UNSET = 0xFFFFFFFF  # an audit id or session not set (BSM's AU_DEFAUDITID)


class Kind(enum.IntEnum):
    """What an entry does to the file named by ``path`` (and ``path2``)."""

    WRITE = 1  # [start, end) now holds data; the file is size bytes long
    TRUNCATE = 2  # the file is size bytes long (zeros past its old end)
    CREATE = 3  # a new empty file at path, with mode, uid and gid
    UNLINK = 4  # path is gone (the paper's deletion: size 0)
    RENAME = 5  # path is now path2 (replacing what path2 was)
    LINK = 6  # path2 is a new name of path's file
    META = 7  # mode, uid and gid are now these
    BASE = 8  # a baseline's file: data is the SHA-256 of its size bytes
    # A change to path in [start, end) that was not captured (event says why):
    # the file's history is incomplete from then on, until the next baseline.
    LOST = 9


@dataclass(frozen=True)
class Entry:
    seq: int  # the journal's order: the ring's sequence of the record
    time_ns: int  # when the change was made, ns since the epoch
    kind: Kind
    fid: int  # the file: which inode, so that hard links are one file
    path: bytes
    path2: bytes = b""
    start: int = 0
    end: int = 0
    size: int = 0
    data: bytes = b""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    auid: int = AUDIT_UNSET
    asid: int = AUDIT_UNSET
    terminal: str = ""  # "ADDRESS" or "ADDRESS port N", as praudit prints a subject's
    event: str = ""  # the BSM event, e.g. AUE_WRITE


class JournalError(ValueError):
    """An entry that cannot be written (says which field and why)."""


@dataclass(frozen=True)
class Damage:
    """Bytes of a journal file that hold no entry that checks."""

    file: Path
    offset: int
    length: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.file}: offset {self.offset}: {self.length} bytes skipped ({self.reason}); "
            "the entries before and after are used"
        )


def _check(e: Entry) -> None:
    for name in ("path", "path2"):
        p: bytes = getattr(e, name)
        if len(p) > PATH_MAX or b"\0" in p:
            raise JournalError(f"entry {e.seq}: {name} longer than {PATH_MAX} or holding NUL")
    if not e.path:
        raise JournalError(f"entry {e.seq}: no path")
    if e.kind in (Kind.RENAME, Kind.LINK) and not e.path2:
        raise JournalError(f"entry {e.seq}: {e.kind.name} without path2")
    if e.kind == Kind.WRITE and (e.end - e.start != len(e.data) or e.start < 0):
        raise JournalError(f"entry {e.seq}: [{e.start}, {e.end}) does not hold {len(e.data)} bytes")
    if e.kind == Kind.BASE and len(e.data) != 32:
        raise JournalError(f"entry {e.seq}: a baseline file's digest is not 32 bytes")
    if e.kind == Kind.WRITE and e.size < e.end:
        raise JournalError(f"entry {e.seq}: size {e.size} ends before the write's end {e.end}")


def encode(e: Entry) -> bytes:
    _check(e)
    return b"".join(
        frame_parts(
            e.seq,
            e.time_ns,
            int(e.kind),
            e.mode,
            e.uid,
            e.gid,
            e.auid,
            e.asid,
            e.fid,
            e.start,
            e.end,
            e.size,
            e.path,
            e.path2,
            e.terminal.encode(),
            e.event.encode(),
            e.data,
        )
    )


def frame_parts(
    seq: int,
    time_ns: int,
    kind: int,
    mode: int,
    uid: int,
    gid: int,
    auid: int,
    asid: int,
    fid: int,
    start: int,
    end: int,
    size: int,
    path: bytes,
    path2: bytes,
    terminal: bytes,
    event: bytes,
    data: bytes | memoryview,
) -> tuple[bytes, bytes | memoryview]:
    """An entry's frame, unchecked, as two pieces to join: the frame's header
    and the body's fields, then the data (not copied: a view of the record
    it came in does), so that filing copies a write's bytes once."""
    fields = (
        _BODY.pack(
            seq,
            time_ns,
            kind,
            mode,
            uid,
            gid,
            auid,
            asid,
            fid,
            start,
            end,
            size,
            len(path),
            len(path2),
            len(terminal),
            len(event),
            len(data),
        )
        + path
        + path2
        + terminal
        + event
    )
    crc = zlib.crc32(data, zlib.crc32(fields))
    return _FRAME.pack(MAGIC, len(fields) + len(data), crc) + fields, data


def decode_body(body: bytes) -> Entry:
    """The entry a checked body holds; ValueError if its fields disagree."""
    if len(body) < _BODY.size:
        raise ValueError("body shorter than an entry's fields")
    f = _BODY.unpack_from(body)
    lens = f[12:17]
    if _BODY.size + sum(lens) != len(body):
        raise ValueError("field lengths do not add up to the body")
    o = _BODY.size
    parts = []
    for n in lens:
        parts.append(body[o : o + n])
        o += n
    path, path2, term, event, data = parts
    e = Entry(
        seq=f[0],
        time_ns=f[1],
        kind=Kind(f[2]),
        mode=f[3],
        uid=f[4],
        gid=f[5],
        auid=f[6],
        asid=f[7],
        fid=f[8],
        start=f[9],
        end=f[10],
        size=f[11],
        path=path,
        path2=path2,
        terminal=term.decode(),
        event=event.decode(),
        data=data,
    )
    _check(e)
    return e


def _frame_at(buf: bytes, o: int) -> tuple[Entry, int] | str:
    """The entry of the frame at @o and the offset after it, or why not."""
    if len(buf) - o < _FRAME.size:
        return "truncated frame header"
    magic, n, crc = _FRAME.unpack_from(buf, o)
    if magic != MAGIC:
        return "no frame here"
    if n > MAX_BODY:
        return f"frame length {n} is impossible"
    end = o + _FRAME.size + n
    if end > len(buf):
        return "frame runs past the end of the file (a write cut short)"
    body = buf[o + _FRAME.size : end]
    if zlib.crc32(body) != crc:
        return "checksum mismatch"
    try:
        return decode_body(body), end
    except ValueError as err:  # JournalError and a bad Kind among them
        return f"bad entry: {err}"


def read(
    path: Path, damages: list[Damage], start: int = 0, end: int | None = None
) -> Iterator[Entry]:
    """The entries of one journal file, in file order, or of its bytes from
    @start (a frame's start) to @end; damage is appended to @damages (file
    offsets) and reading resumes at the next frame that checks."""
    with path.open("rb") as f:
        f.seek(start)
        buf = f.read() if end is None else f.read(max(0, end - start))
    o = 0
    while o < len(buf):
        got = _frame_at(buf, o)
        if not isinstance(got, str):
            entry, o = got
            yield entry
            continue
        # Resynchronise: the next magic whose frame checks.
        nxt = buf.find(MAGIC, o + 1)
        while nxt != -1 and isinstance(_frame_at(buf, nxt), str):
            nxt = buf.find(MAGIC, nxt + 1)
        stop = len(buf) if nxt == -1 else nxt
        damages.append(Damage(path, start + o, stop - o, got))
        o = stop


def append(path: Path, entries: list[Entry]) -> None:
    """Add @entries to the journal file @path, on disk when this returns.
    A crash leaves at most a cut frame at the end, which reading reports
    and skips."""
    append_bytes(path, b"".join(encode(e) for e in entries))


def append_bytes(path: Path, frames: bytes) -> None:
    """append() of entries already encoded."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, frames)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of @data to @fd (write(2) may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
