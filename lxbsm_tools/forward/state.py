"""What lxbsm-forward keeps on disk: one position file per output, a status file.

Both are written crash-safely: a temporary file next to the target, written
and fsync-ed, renamed over the target, then the directory fsync-ed.  A reader
(the next lxbsm-forward after a SIGKILL, ``lxbsm-audit status``) sees the old
file or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_DIR = ".lxbsm-forward"  # in the first dir: of audit_control (root:audit 0770)
STATUS = "status.json"
LOCK = "lock"


class StateError(Exception):
    """A position file that cannot be used; the message names it and what to do."""


def state_dir(first_trail_dir: str) -> Path:
    return Path(first_trail_dir) / STATE_DIR


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def position_file(directory: Path, output_name: str) -> Path:
    """``<kind>_<target>-<hash>.pos``: readable, and distinct for distinct outputs."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", output_name).strip("_")[:80]
    digest = hashlib.sha256(output_name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return directory / f"{safe}-{digest}.pos"


@dataclass
class Position:
    """The last record the output's collector accepted, and the output's counters.

    ``trail`` is the trail's start stamp (``YYYYMMDDHHMMSS``, the part of its
    name that survives closing and crash recovery), ``offset`` the byte after
    that record in it; ``""``/0 before the first record.
    """

    output: str
    host: str
    trail: str = ""
    offset: int = 0
    seq: int | None = None  # the BSM sequence number of that record, if it had one
    sent: int = 0  # records accepted
    resent: int = 0  # records sent again after a broken connection (maybe duplicates)
    dropped: int = 0  # records skipped: the backlog went over spool=
    lost_trails: int = 0  # trails removed (expire-after) before they were all sent
    lost_bytes: int = 0  # bytes in them (or unreadable bytes) not sent

    def save(self, path: Path) -> None:
        atomic_write(path, (json.dumps(asdict(self), sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: Path, output: str, host: str) -> Position | None:
        """The saved position, None when there is none; StateError when it is damaged."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{path}: cannot read: {e.strerror}") from None
        try:
            d: Any = json.loads(text)
            if not isinstance(d, dict) or d.get("output") != output:
                raise ValueError("not this output's position")
            pos = cls(
                output=output,
                host=str(d["host"]),
                trail=str(d["trail"]),
                offset=int(d["offset"]),
                seq=None if d.get("seq") is None else int(d["seq"]),
                **{
                    k: int(d.get(k, 0))
                    for k in ("sent", "resent", "dropped", "lost_trails", "lost_bytes")
                },
            )
        except (ValueError, KeyError, TypeError) as e:
            raise StateError(
                f"{path}: damaged position file ({e}): remove it to start this output "
                "afresh at the open trail (records before it are then not sent)"
            ) from None
        if (pos.trail and not re.fullmatch(r"\d{14}", pos.trail)) or pos.offset < 0:
            raise StateError(f"{path}: bad trail '{pos.trail}' or offset in the position file")
        pos.host = host
        return pos


def read_status(path: str | Path) -> dict[str, Any] | None:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None
