"""Following the daemon's trails, closed and open, record by record.

A trail is known by its start stamp (``YYYYMMDDHHMMSS``, trail.py's naming):
``<start>.not_terminated`` while the daemon writes it, then ``<start>.<end>``
or ``<start>.crash_recovery``; the stamp never changes, so a position
(start stamp, offset) survives the renames.  A trail is finished once it is
no longer ``not_terminated``: the daemon renames it only after its last
write.  Only whole records are handed out: the daemon appends whole batches,
and a reader that catches a batch half-copied waits for the rest.  File
tokens (at the start and end of each trail) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxbsm_tools.auditd.trail import trail_entries
from lxbsm_tools.bsm.tokens import HEADER_IDS

FILE_TOKEN = 0x11
CHUNK = 256 * 1024
MAX_RECORD = 1 << 24  # a header claiming more is damage, not a record


@dataclass(frozen=True)
class TrailFile:
    start: str
    path: Path
    closed: bool
    size: int


@dataclass(frozen=True)
class Item:
    """One whole record: its bytes, and where it is (trail start, offsets)."""

    raw: bytes
    trail: str
    offset: int
    end: int
    path: str = ""  # the trail's name when it was read


def list_trails(dirs: Sequence[str]) -> list[TrailFile]:
    """Every trail in ``dirs``, oldest first (by start stamp; a closed one
    before an open one with the same stamp)."""
    out = []
    for e, m in trail_entries(dirs):
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        closed = m.group(2) != "not_terminated"
        out.append(TrailFile(m.group(1), Path(e.path), closed, st.st_size))
    return sorted(out, key=lambda t: (t.start, not t.closed))


def scan(buf: bytes, base: int, at_end: bool) -> tuple[list[tuple[int, int]], int, str | None]:
    """Whole records in ``buf`` (which starts at trail offset ``base``):
    their (start, end) offsets, where scanning stopped, and what is wrong
    there if it is damage rather than a record still being written.
    ``at_end``: ``buf`` runs to the end of a finished trail, so an
    incomplete record at its end is damage, not a write in progress."""
    recs: list[tuple[int, int]] = []
    pos = 0
    n = len(buf)
    while pos < n:
        tid = buf[pos]
        if tid == FILE_TOKEN:
            if pos + 11 > n:
                break
            size = 11 + int.from_bytes(buf[pos + 9 : pos + 11], "big")
        elif tid in HEADER_IDS:
            if pos + 5 > n:
                break
            size = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if size < 5 or size > MAX_RECORD:
                return recs, base + pos, f"a header claims {size} bytes"
        else:
            return recs, base + pos, f"byte 0x{tid:02x} is neither a record nor a file token"
        if pos + size > n:
            break
        if tid != FILE_TOKEN:
            recs.append((base + pos, base + pos + size))
        pos += size
    if at_end and pos < n:
        return recs, base + pos, f"{n - pos} bytes at the end are not a whole record"
    return recs, base + pos, None


class Cursor:
    """A read position in the trails; ``read()`` hands out whole records.

    ``on_loss(kind, detail, nbytes)`` is told of every byte that will never
    be handed out: a trail removed before it was read to its end, damage in
    a trail.  Nothing is skipped without it.
    """

    def __init__(
        self,
        dirs: Sequence[str],
        trail: str,
        offset: int,
        on_loss: Callable[[str, str, int], None],
    ) -> None:
        self.dirs = list(dirs)
        self.trail = trail
        self.offset = offset
        self.on_loss = on_loss
        self._fd = -1
        self._fd_trail = ""
        self._fd_path: Path | None = None
        self.damaged = ""  # what stops the cursor in the open trail, if anything
        self.sizes: dict[str, int] = {}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._fd_trail, self._fd_path = -1, "", None

    def seek(self, trail: str, offset: int) -> None:
        if trail != self.trail:
            self.close()
        self.trail, self.offset = trail, offset

    def _open(self, t: TrailFile) -> bool:
        if self._fd >= 0 and self._fd_trail == t.start:
            return True
        self.close()
        try:
            self._fd = os.open(t.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # renamed or removed since the listing: list again
        self._fd_trail, self._fd_path = t.start, t.path
        return True

    def _lost_before(self, trails: list[TrailFile]) -> list[TrailFile]:
        """Trails at or after the position; the position's trail, when gone
        while later ones exist, is a loss (removed by expiry before being sent)."""
        later = [t for t in trails if t.start >= self.trail]
        if self.trail and (not later or later[0].start != self.trail) and later:
            size = self.sizes.get(self.trail)
            detail = f"trail {self.trail}* removed before it was sent to its end"
            self.on_loss("trail", detail, max(0, size - self.offset) if size else 0)
            self.seek(later[0].start, 0)
        return later

    def backlog(self, trails: list[TrailFile] | None = None) -> int:
        """Bytes of trail from the position to the end of the newest trail."""
        trails = list_trails(self.dirs) if trails is None else trails
        total = 0
        for t in trails:
            self.sizes[t.start] = t.size
            if t.start == self.trail:
                total += max(0, t.size - self.offset)
            elif t.start > self.trail:
                total += t.size
        return total

    def read(self, limit: int = CHUNK) -> list[Item]:
        """Whole records from the position on (about ``limit`` bytes at most),
        moving into the next trail at the end of a finished one.  The
        position moves past what is returned."""
        items: list[Item] = []
        used = 0
        for _ in range(64):  # trails crossed in one call, at most
            trails = list_trails(self.dirs)
            for t in trails:
                self.sizes[t.start] = t.size
            later = self._lost_before(trails)
            if not later:
                return items
            if not self.trail:
                # A new output starts at the open trail (the closed ones are history).
                open_ = [t for t in later if not t.closed]
                if not open_:
                    return items
                self.seek(open_[-1].start, 0)
                continue
            cur = later[0]
            if not self._open(cur):
                continue
            got, stop, damage = self._read_from(cur, limit - used)
            items += got
            used += sum(len(i.raw) for i in got)
            self.offset = stop
            if damage and not cur.closed:
                self.damaged = f"{cur.path} offset {stop}: {damage}"
                return items
            self.damaged = ""
            if damage:
                size = os.fstat(self._fd).st_size
                self.on_loss("damage", f"{cur.path} offset {stop}: {damage}", size - stop)
                self.offset = size
            if used >= limit or not cur.closed:
                return items
            # Finished and read to its end (an offset past its end: cut back
            # by crash recovery, whose records are written again after it).
            nxt = [t for t in later if t.start > cur.start]
            if not nxt:
                return items
            self.seek(nxt[0].start, 0)
        return items

    def _read_from(self, t: TrailFile, limit: int) -> tuple[list[Item], int, str | None]:
        items: list[Item] = []
        off = self.offset
        used = 0
        while used < limit:
            buf = os.pread(self._fd, CHUNK, off)
            if not buf:
                break
            at_end = t.closed and len(buf) < CHUNK
            recs, stop, damage = scan(buf, off, at_end)
            for s, e in recs:
                if used >= limit:  # the limit, to the record (a spool drop relies on it)
                    return items, s, None
                items.append(Item(buf[s - off : e - off], t.start, s, e, str(t.path)))
                used += e - s
            if damage:
                return items, stop, damage
            if stop > off:
                partial = stop < off + len(buf)
                off = stop
                if partial and len(buf) < CHUNK:
                    break  # the rest of a batch being written: wait for it
                continue
            # A record bigger than a chunk: read it whole once it is all there.
            big = len(buf) >= 5 and buf[0] in HEADER_IDS
            size = int.from_bytes(buf[1:5], "big") if big else 0
            whole = os.pread(self._fd, size, off) if len(buf) < size <= MAX_RECORD else b""
            if not whole or len(whole) != size:
                if at_end:
                    return items, off, "the last record is cut short"
                break
            items.append(Item(whole, t.start, off, off + size, str(t.path)))
            used += size
            off += size
        return items, off, None
