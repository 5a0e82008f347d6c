"""Reading configuration files and numbers in them, strictly.

Every configuration file the tools read (audit_control, audit_user,
audit_event, audit_class, exec_control) goes through :func:`read_text`: it
must be a regular file of at most :data:`MAX_BYTES`, so that a directory, a
FIFO or ``/dev/zero`` given by mistake is a clear error instead of a silent
default, a hang or a MemoryError.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_BYTES = 4 << 20  # the packaged audit_event is 28 KiB
ID_MAX = 0xFFFFFFFF  # uid_t, gid_t, au_id_t: 32 bits
_DECIMAL = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts '²', int() does not


class FileReadError(OSError):
    """A configuration file cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | os.PathLike[str]) -> None:
    """FileReadError if ``path`` exists but is not a regular file (after symlinks)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name (read_text says so)
        return
    if not stat.S_ISREG(st.st_mode):
        raise FileReadError(f"{path}: is {_kind(st.st_mode)}, not a configuration file")


def read_text(path: str | os.PathLike[str], limit: int = MAX_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes (UTF-8, surrogateescape)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise FileReadError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError:
        raise FileReadError(f"{str(path)!r}: cannot read: a NUL byte in the file name") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileReadError(f"{path}: is {_kind(st.st_mode)}, not a configuration file")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileReadError(f"{path}: larger than {limit >> 20} MiB: not a configuration file")
    except OSError as e:
        if isinstance(e, FileReadError):
            raise
        raise FileReadError(f"{path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def decimal(value: str, what: str, maximum: int | None = None, minimum: int = 0) -> int:
    """An unsigned decimal number; ValueError naming ``what`` and the range otherwise."""
    v = value.strip()
    rng = f"{minimum}-{maximum}" if maximum is not None else f"{minimum} or more"
    if not _DECIMAL.fullmatch(v):
        raise ValueError(f"{what} is a decimal number {rng}, got '{value}'")
    n = int(v)
    if n < minimum or (maximum is not None and n > maximum):
        raise ValueError(f"{what} {n} is out of range ({rng})")
    return n


def is_decimal(value: str) -> bool:
    return _DECIMAL.fullmatch(value) is not None


def id_number(value: str, what: str) -> int:
    """A uid, gid or audit id written as a number: 0 to 2^32-1, never truncated."""
    return decimal(value, what, ID_MAX)


def lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of the non-blank, non-comment lines."""
    out = []
    for n, raw in enumerate(read_text(path).splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out
