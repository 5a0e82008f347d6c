"""Decode errors for BSM trails."""

from __future__ import annotations


class BSMDecodeError(Exception):
    """A malformed BSM trail.

    ``source`` names the input (a file name or ``"<stdin>"``), ``offset`` is the
    absolute byte offset in that input where the offending token or record
    starts, and ``token`` is the token name (``"path"``, ``"header32"``...) or
    ``None`` when the byte at ``offset`` is not a known token at all.
    """

    def __init__(self, source: str, offset: int, token: str | None, reason: str) -> None:
        self.source = source
        self.offset = offset
        self.token = token
        self.reason = reason
        super().__init__(f"{source}: offset {offset}: {reason}")


class _NeedMore(Exception):
    """Internal: the buffer ends inside a record and more input may follow."""


class _Malformed(Exception):
    """Internal: raised by the fast decoders; converted to BSMDecodeError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
