"""Records and trails: decoding (bytes, files, streams) and encoding.

A trail is a sequence of records, optionally separated by stand-alone
``file`` tokens (0x11).  A record is a header token (header32, header32_ex,
header64 or header64_ex) carrying the record's total byte count, tokens, and
normally a trailer whose count must equal the header's.  Decoding accounts
for every byte: each record's tokens must exactly fill the byte count in its
header, and anything else is a :class:`BSMDecodeError` naming the source, the
byte offset and the token.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Literal, NamedTuple, overload

from .errors import BSMDecodeError, _Malformed, _NeedMore
from .tokens import (
    FILE_ID,
    HEADER_IDS,
    TOKEN_BY_ID,
    TOKEN_BY_NAME,
    TRAILER_ID,
    TRAILER_MAGIC,
    UNKNOWN,
    Token,
    make_token,
)

__all__ = [
    "BSMTime",
    "Record",
    "TrailReader",
    "decode_records",
    "encode_record",
    "read_trail",
]

#: Refuse header byte counts above this (a corrupt size would otherwise make a
#: stream reader wait for gigabytes).  BSM writers cap records at 32767 bytes.
MAX_RECORD_SIZE = 16 * 1024 * 1024
AUDIT_TRAILER_SIZE = 7
_HEADER_MIN = {0x14: 18, 0x15: 22, 0x74: 26, 0x79: 30}
_RESYNC = re.compile(rb"[\x14\x15\x74\x79]")
_U32 = struct.Struct(">I")
_SUBJECTS = ("subject32", "subject32_ex", "subject64", "subject64_ex")
_PROCESSES = ("process32", "process32_ex", "process64", "process64_ex")


class BSMTime(NamedTuple):
    """Header time: seconds since the epoch and the millisecond field."""

    sec: int
    msec: int

    def as_float(self) -> float:
        return self.sec + self.msec / 1000.0


class Record:
    """One audit record.

    ``tokens`` starts with the header; ``raw`` is the record's exact bytes;
    ``offset`` the absolute offset in ``source``.  ``event``, ``modifier``,
    ``version``, ``size`` and ``time`` come from the header.
    """

    __slots__ = ("offset", "raw", "source", "tokens")

    def __init__(
        self, tokens: list[Token], raw: bytes, offset: int = 0, source: str = "<bytes>"
    ) -> None:
        self.tokens = tokens
        self.raw = raw
        self.offset = offset
        self.source = source

    @property
    def header(self) -> Token:
        return self.tokens[0]

    def _header_field(self, name: str) -> int:
        h = self.tokens[0]
        return int(h.values[h.spec.index[name]])

    @property
    def event(self) -> int:
        return self._header_field("event")

    @property
    def modifier(self) -> int:
        return self._header_field("modifier")

    @property
    def version(self) -> int:
        return self._header_field("version")

    @property
    def size(self) -> int:
        return self._header_field("size")

    @property
    def time(self) -> BSMTime:
        return BSMTime(*self.sort_key)

    @property
    def sort_key(self) -> tuple[int, int]:
        """``(sec, msec)`` of the header."""
        h = self.tokens[0]
        index = h.spec.index
        v = h.values
        return (int(v[index["sec"]]), int(v[index["msec"]]))

    def first(self, *names: str) -> Token | None:
        """The first token with one of ``names`` (e.g. ``"subject32"``), or None."""
        for t in self.tokens:
            if t.spec.name in names:
                return t
        return None

    def all(self, *names: str) -> list[Token]:
        """Every token with one of ``names``, in record order."""
        return [t for t in self.tokens if t.spec.name in names]

    @property
    def subject(self) -> Token | None:
        """The first subject token of any flavour (32/64, ex or not)."""
        return self.first(*_SUBJECTS)

    @property
    def processes(self) -> list[Token]:
        return self.all(*_PROCESSES)

    @property
    def return_token(self) -> Token | None:
        return self.first("return32", "return64")

    @property
    def success(self) -> bool | None:
        """True/False from the return token's status; None without one."""
        r = self.return_token
        if r is None:
            return None
        return int(r.status) == 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (bytes values as hex)."""

        def conv(v: Any) -> Any:
            if isinstance(v, bytes | bytearray):
                return bytes(v).hex()
            return v

        return {
            "offset": self.offset,
            "size": self.size,
            "version": self.version,
            "event": self.event,
            "modifier": self.modifier,
            "time": self.time.sec,
            "msec": self.time.msec,
            "tokens": [{k: conv(v) for k, v in t.as_dict().items()} for t in self.tokens],
        }

    def __repr__(self) -> str:
        names = ",".join(t.name for t in self.tokens)
        return f"<Record event={self.event} at {self.source}:{self.offset} [{names}]>"


# --------------------------------------------------------------------------
# Decoding.
# --------------------------------------------------------------------------


def _token_name(tid: int) -> str:
    spec = TOKEN_BY_ID.get(tid)
    return spec.name if spec is not None else "unknown"


# Tokens allowed after the header: the table minus the headers (a header
# inside a record is an unknown token, as in OpenBSM).
_BODY_BY_ID = {tid: spec for tid, spec in TOKEN_BY_ID.items() if tid not in HEADER_IDS}


def _token_error(source: str, offset: int, spec: Any, tid: int, e: Exception) -> BSMDecodeError:
    if isinstance(e, _Malformed):
        what = "truncated" if e.reason == "truncated" else f"invalid ({e.reason})"
        return BSMDecodeError(source, offset, spec.name, f"{what} {spec.name} token (0x{tid:02x})")
    reason = f"invalid {spec.name} token (0x{tid:02x}): {e}"
    return BSMDecodeError(source, offset, spec.name, reason)


def _check_trailer(
    values: tuple[Any, ...], npos: int, end: int, size: int, source: str, offset: int
) -> None:
    magic, count = values
    if magic != TRAILER_MAGIC:
        raise BSMDecodeError(source, offset, "trailer", f"bad trailer magic 0x{magic:04x}")
    if npos != end:
        raise BSMDecodeError(
            source,
            offset,
            "trailer",
            f"trailer at {npos - end} bytes before the end of the record",
        )
    if count != size:
        raise BSMDecodeError(
            source,
            offset,
            "trailer",
            f"trailer count {count} does not match header size {size}",
        )


def _decode_record(buf: Any, start: int, n: int, eof: bool, base: int, source: str) -> Record:
    """Decode the record whose header starts at ``buf[start]``.

    ``n`` is the number of valid bytes in ``buf``.  Raises :class:`_NeedMore`
    when the record runs past ``n`` and more input may follow.
    """
    tid = buf[start]
    hspec = TOKEN_BY_ID[tid]
    if start + 5 > n:
        if not eof:
            raise _NeedMore
        hname = hspec.name
        raise BSMDecodeError(source, base + start, hname, f"truncated {hname} token (0x{tid:02x})")
    (size,) = _U32.unpack_from(buf, start + 1)
    if size < _HEADER_MIN[tid] or size > MAX_RECORD_SIZE:
        hname = hspec.name
        raise BSMDecodeError(
            source,
            base + start,
            hname,
            f"implausible record size {size} in {hname} token (0x{tid:02x})",
        )
    end = start + size
    if end > n:
        if not eof:
            raise _NeedMore
        hname = hspec.name
        raise BSMDecodeError(
            source,
            base + start,
            hname,
            f"truncated record: {hname} token says {size} bytes, {n - start} left",
        )
    try:
        values, pos = hspec.decode(buf, start + 1, end)
    except (_Malformed, struct.error, ValueError, OSError, IndexError) as e:
        raise _token_error(source, base + start, hspec, tid, e) from None
    tokens = [Token(hspec, values, base + start)]
    append = tokens.append
    by_id = _BODY_BY_ID
    while pos < end:
        tid = buf[pos]
        spec = by_id.get(tid)
        if spec is None:
            # OpenBSM's rule: an unknown token swallows the rest of the record
            # except the 7 bytes of a trailer.
            stop = end - AUDIT_TRAILER_SIZE
            if stop <= pos + 1:
                raise BSMDecodeError(
                    source,
                    base + pos,
                    None,
                    f"unknown token 0x{tid:02x} with no room left for a trailer",
                )
            append(Token(UNKNOWN, (tid, bytes(buf[pos + 1 : stop])), base + pos))
            pos = stop
            continue
        try:
            values, npos = spec.decode(buf, pos + 1, end)
        except (_Malformed, struct.error, ValueError, OSError, IndexError) as e:
            raise _token_error(source, base + pos, spec, tid, e) from None
        append(Token(spec, values, base + pos))
        if tid == TRAILER_ID:
            _check_trailer(values, npos, end, size, source, base + pos)
        pos = npos
    return Record(tokens, bytes(buf[start:end]), base + start, source)


def _decode_file_token(buf: Any, start: int, n: int, eof: bool, base: int, source: str) -> Token:
    spec = TOKEN_BY_ID[FILE_ID]
    if start + 11 > n:
        if not eof:
            raise _NeedMore
        raise BSMDecodeError(source, base + start, "file", "truncated file token (0x11)")
    namelen = buf[start + 9] << 8 | buf[start + 10]
    end = start + 11 + namelen
    if end > n:
        if not eof:
            raise _NeedMore
        raise BSMDecodeError(source, base + start, "file", "truncated file token (0x11)")
    values, _ = spec.decode(buf, start + 1, end)
    return Token(spec, values, base + start)


Item = Record | Token
ErrorHook = Callable[[BSMDecodeError], None]


class _Scanner:
    """Incremental decoder over a growing buffer (shared by bytes and streams)."""

    def __init__(
        self,
        source: str,
        *,
        skip_bad: bool,
        partial: bool,
        include_file_tokens: bool,
        on_error: ErrorHook | None,
    ) -> None:
        self.source = source
        self.skip_bad = skip_bad
        self.include_files = include_file_tokens
        self.on_error = on_error
        self.resyncing = partial
        self.errors = 0

    def scan(self, buf: Any, pos: int, n: int, eof: bool, base: int) -> Iterator[Item]:
        """Yield items from ``buf[pos:n]``; ``self.pos`` is where to resume."""
        self.pos = pos
        while pos < n:
            tid = buf[pos]
            if self.resyncing:
                m = _RESYNC.search(buf, pos, n)
                if m is None:
                    self.pos = n
                    return
                pos = m.start()
                try:
                    rec = _decode_record(buf, pos, n, eof, base, self.source)
                except _NeedMore:
                    self.pos = pos
                    return
                except BSMDecodeError:
                    pos += 1
                    self.pos = pos
                    continue
                self.resyncing = False
                pos = self.pos = pos + len(rec.raw)
                yield rec
                continue
            try:
                if tid in HEADER_IDS:
                    rec = _decode_record(buf, pos, n, eof, base, self.source)
                    pos = self.pos = pos + len(rec.raw)
                    yield rec
                elif tid == FILE_ID:
                    tok = _decode_file_token(buf, pos, n, eof, base, self.source)
                    pos = self.pos = pos + _file_token_len(buf, pos)
                    if self.include_files:
                        yield tok
                else:
                    raise BSMDecodeError(
                        self.source,
                        base + pos,
                        None,
                        f"expected a header or file token, found byte 0x{tid:02x}",
                    )
            except _NeedMore:
                self.pos = pos
                return
            except BSMDecodeError as e:
                self.errors += 1
                if not self.skip_bad:
                    raise
                if self.on_error is not None:
                    self.on_error(e)
                self.resyncing = True
                pos = self.pos = pos + 1


def _file_token_len(buf: Any, pos: int) -> int:
    return 11 + (int(buf[pos + 9]) << 8 | int(buf[pos + 10]))


class TrailReader:
    """Iterate over the records of a binary stream (file, pipe, socket).

    Reads in chunks, so it works on unbounded input (``tail -f trail |``).
    ``skip_bad``: report each malformed record to ``on_error`` and resume at
    the next header that decodes, losing only the broken record.
    ``partial``: discard leading bytes up to the first decodable header
    (praudit ``-p``).  ``include_file_tokens``: yield stand-alone file tokens
    as :class:`Token` items (otherwise they are skipped).
    """

    def __init__(
        self,
        stream: IO[bytes],
        source: str = "<stream>",
        *,
        skip_bad: bool = False,
        partial: bool = False,
        include_file_tokens: bool = False,
        on_error: ErrorHook | None = None,
        chunk_size: int = 1 << 20,
    ) -> None:
        self.stream = stream
        self.source = source
        self.chunk_size = chunk_size
        self.scanner = _Scanner(
            source,
            skip_bad=skip_bad or partial,
            partial=partial,
            include_file_tokens=include_file_tokens,
            on_error=on_error,
        )

    @property
    def errors(self) -> int:
        return self.scanner.errors

    def _read(self) -> bytes:
        read1 = getattr(self.stream, "read1", None)
        if read1 is not None:
            data: bytes = read1(self.chunk_size)
        else:
            data = self.stream.read(self.chunk_size)
        return data

    def __iter__(self) -> Iterator[Item]:
        buf = bytearray()
        base = 0  # absolute offset of buf[0]
        eof = False
        while True:
            if not eof:
                data = self._read()
                if data:
                    buf += data
                else:
                    eof = True
            sc = self.scanner
            yield from sc.scan(buf, 0, len(buf), eof, base)
            consumed = sc.pos
            if consumed:
                del buf[:consumed]
                base += consumed
            if eof:
                return


def _scan_bytes(
    data: bytes | bytearray | memoryview,
    offset: int,
    source: str,
    skip_bad: bool,
    partial: bool,
    include_file_tokens: bool,
    on_error: ErrorHook | None,
) -> Iterator[Item]:
    buf = bytes(data) if isinstance(data, memoryview) else data
    sc = _Scanner(
        source,
        skip_bad=skip_bad or partial,
        partial=partial,
        include_file_tokens=include_file_tokens,
        on_error=on_error,
    )
    yield from sc.scan(buf, offset, len(buf), True, 0)


@overload
def decode_records(
    data: bytes | bytearray | memoryview,
    *,
    offset: int = 0,
    source: str = "<bytes>",
    include_file_tokens: Literal[False] = False,
    skip_bad: bool = False,
    partial: bool = False,
    on_error: ErrorHook | None = None,
) -> Iterator[Record]: ...


@overload
def decode_records(
    data: bytes | bytearray | memoryview,
    *,
    offset: int = 0,
    source: str = "<bytes>",
    include_file_tokens: Literal[True],
    skip_bad: bool = False,
    partial: bool = False,
    on_error: ErrorHook | None = None,
) -> Iterator[Item]: ...


def decode_records(
    data: bytes | bytearray | memoryview,
    *,
    offset: int = 0,
    source: str = "<bytes>",
    include_file_tokens: bool = False,
    skip_bad: bool = False,
    partial: bool = False,
    on_error: ErrorHook | None = None,
) -> Iterator[Any]:
    """Decode the records in ``data`` starting at ``offset``.

    Stand-alone file tokens between records are skipped, or yielded as
    :class:`Token` items with ``include_file_tokens=True``.  Offsets in
    records and errors are absolute offsets into ``data``.
    """
    return _scan_bytes(data, offset, source, skip_bad, partial, include_file_tokens, on_error)


def read_trail(
    path: str, *, include_file_tokens: bool = False, skip_bad: bool = False
) -> Iterator[Any]:
    """Decode the trail file at ``path`` (streamed; constant memory)."""
    with open(path, "rb") as f:
        yield from TrailReader(
            f, str(path), include_file_tokens=include_file_tokens, skip_bad=skip_bad
        )


# --------------------------------------------------------------------------
# Encoding.
# --------------------------------------------------------------------------


def encode_record(
    event: int,
    modifier: int,
    tokens: Iterable[Token],
    *,
    time: tuple[int, int] | BSMTime,
    version: int = 11,
    header: str = "header32",
    host: str | None = None,
    trailer: bool = True,
) -> bytes:
    """Assemble one record: header, ``tokens``, trailer, with the byte counts.

    ``time`` is ``(seconds, milliseconds)``.  ``header`` selects header32
    (default), header64, or the ``_ex`` variants (which need ``host``).
    """
    body = b"".join(t.encode() for t in tokens)
    sec, msec = time
    fields: dict[str, Any] = {
        "size": 0,
        "version": version,
        "event": event,
        "modifier": modifier,
        "sec": sec,
        "msec": msec,
    }
    spec = TOKEN_BY_NAME[header]
    if "address" in spec.index:
        fields["address"] = host
    hdr_len = len(make_token(header, **fields).encode())
    total = hdr_len + len(body) + (AUDIT_TRAILER_SIZE if trailer else 0)
    fields["size"] = total
    out = make_token(header, **fields).encode() + body
    if trailer:
        out += TOKEN_BY_NAME["trailer"].encode(TRAILER_MAGIC, total)
    return out


def encode_file_token(name: str, *, time: tuple[int, int]) -> bytes:
    """A stand-alone file token (0x11) as written between records."""
    return make_token("file", sec=time[0], msec=time[1], name=name).encode()
