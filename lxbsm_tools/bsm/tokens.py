"""The BSM token table: one declarative description of every token.

Each token is described once, as a ``construct`` ``Struct`` of its fields
(everything after the one-byte token ID), in :data:`TOKEN_TABLE`.  That
description is used three ways:

* ``construct`` parses and builds tokens with it directly
  (:meth:`TokenSpec.parse_construct`, :meth:`TokenSpec.build`);
* :func:`_compile_decoder` walks the same ``Struct`` and generates a fast
  decoder per token type: runs of fixed-size fields become one precompiled
  ``struct.Struct`` and the few variable-size field kinds (length-prefixed
  strings, NUL-terminated string lists, typed addresses...) call small
  helpers.  There is no second hand-written layout: the generated decoder
  reads the field list and formats out of the ``Struct``;
* :func:`_compile_encoder` does the same for encoding.

Byte layouts follow ``bsm-format.md`` section 1a (all integers big-endian,
addresses raw network order).
"""

from __future__ import annotations

import socket
import struct
import uuid as _uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from construct import (
    Adapter,
    Bytes,
    Construct,
    FormatField,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Renamed,
    Struct,
    stream_read,
    stream_write,
)

from .errors import _Malformed

__all__ = [
    "TOKEN_BY_ID",
    "TOKEN_BY_NAME",
    "TOKEN_TABLE",
    "UNKNOWN",
    "Token",
    "TokenSpec",
    "make_token",
]

ENCODING = "utf-8"
ERRORS = "surrogateescape"

AU_IPV4 = 4
AU_IPV6 = 16
SUN_PATH_MAX = 108
DATA_UNIT_SIZE = {0: 1, 1: 2, 2: 4, 3: 8}


# --------------------------------------------------------------------------
# Value conversions shared by the construct classes and the fast decoders.
# --------------------------------------------------------------------------


def _ip4(b: bytes) -> str:
    return socket.inet_ntoa(b)


def _ip6(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, b)


def _uuid_str(b: bytes) -> str:
    return str(_uuid.UUID(bytes=bytes(b)))


def _write(stream: Any, data: bytes, path: Any) -> None:
    stream_write(stream, data, len(data), path)


def _text(b: bytes) -> str:
    return bytes(b).decode(ENCODING, ERRORS)


def _ip4_bytes(s: str) -> bytes:
    return socket.inet_aton(s)


def _ip6_bytes(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, s)


def _uuid_bytes(s: str) -> bytes:
    return _uuid.UUID(s).bytes


def _text_bytes(s: str) -> bytes:
    return s.encode(ENCODING, ERRORS)


def addr_type_for(address: str | None) -> int:
    """The BSM address type (4 or 16) for an address string."""
    if address is None:
        return 0
    return AU_IPV6 if ":" in address else AU_IPV4


# --------------------------------------------------------------------------
# Field constructs.  Each carries a ``fast`` description used by the code
# generator; ``("fixed", fmt, decode_fn, encode_fn)`` for fixed-size fields,
# ``("var", kind, arg)`` for variable ones.
# --------------------------------------------------------------------------


class IPv4Addr(Adapter):  # type: ignore[misc]
    """4 raw bytes (network order) <-> dotted quad."""

    fast = ("fixed", "4s", "_ip4", "_ip4_bytes")

    def __init__(self) -> None:
        super().__init__(Bytes(4))

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return _ip4(obj)

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return _ip4_bytes(obj)


class IPv6Addr(Adapter):  # type: ignore[misc]
    """16 raw bytes <-> IPv6 text form."""

    fast = ("fixed", "16s", "_ip6", "_ip6_bytes")

    def __init__(self) -> None:
        super().__init__(Bytes(16))

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return _ip6(obj)

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return _ip6_bytes(obj)


class UUIDField(Adapter):  # type: ignore[misc]
    """16 bytes (big-endian UUID) <-> canonical UUID string."""

    fast = ("fixed", "16s", "_uuid_str", "_uuid_bytes")

    def __init__(self) -> None:
        super().__init__(Bytes(16))

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return _uuid_str(obj)

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return _uuid_bytes(obj)


class AddrByType(Construct):  # type: ignore[misc]
    """An address whose length is given by an earlier ``addr_type`` field.

    Type 4 is IPv4, 16 is IPv6.  ``strict`` tokens reject anything else (as
    OpenBSM's parser does for subject_ex/process_ex/in_addr_ex/socket_ex);
    the header_ex tokens accept other types with no address bytes.
    """

    def __init__(self, typefield: str, strict: bool = True) -> None:
        super().__init__()
        self.typefield = typefield
        self.strict = strict
        self.fast = ("var", "addr", (typefield, strict))

    def _parse(self, stream: Any, context: Any, path: Any) -> str | None:
        t = context[self.typefield]
        if t == AU_IPV4:
            return _ip4(stream_read(stream, 4, path))
        if t == AU_IPV6:
            return _ip6(stream_read(stream, 16, path))
        if self.strict:
            raise _Malformed(f"bad address type {t}")
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> Any:
        _write(stream, _addr_encode(context[self.typefield], obj, self.strict), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _addr_encode(t: int, address: str | None, strict: bool) -> bytes:
    if t == AU_IPV4:
        return _ip4_bytes(address or "0.0.0.0")
    if t == AU_IPV6:
        return _ip6_bytes(address or "::")
    if strict or address is not None:
        raise ValueError(f"bad address type {t}")
    return b""


class NulText(Construct):  # type: ignore[misc]
    """u16 length (counting the NUL) followed by the text and a NUL.

    Decoding drops one trailing NUL; encoding always writes one.
    """

    fast = ("var", "nultext", None)

    def _parse(self, stream: Any, context: Any, path: Any) -> str:
        (n,) = struct.unpack(">H", stream_read(stream, 2, path))
        data = stream_read(stream, n, path)
        if data.endswith(b"\0"):
            data = data[:-1]
        return _text(data)

    def _build(self, obj: str, stream: Any, context: Any, path: Any) -> str:
        _write(stream, _nultext_encode(obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _nultext_encode(s: str) -> bytes:
    b = _text_bytes(s) + b"\0"
    if len(b) > 0xFFFF:
        raise ValueError("text longer than 65534 bytes")
    return struct.pack(">H", len(b)) + b


class StringList(Construct):  # type: ignore[misc]
    """u32 count, then that many NUL-terminated strings (exec_args/exec_env)."""

    fast = ("var", "strlist", None)

    def _parse(self, stream: Any, context: Any, path: Any) -> list[str]:
        (count,) = struct.unpack(">I", stream_read(stream, 4, path))
        out = []
        for _ in range(count):
            buf = bytearray()
            while True:
                c = stream_read(stream, 1, path)
                if c == b"\0":
                    break
                buf += c
            out.append(_text(bytes(buf)))
        return out

    def _build(self, obj: list[str], stream: Any, context: Any, path: Any) -> list[str]:
        _write(stream, _strlist_encode(obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _strlist_encode(items: list[str]) -> bytes:
    parts = [struct.pack(">I", len(items))]
    for s in items:
        b = _text_bytes(s)
        if b"\0" in b:
            raise ValueError("exec argument contains a NUL byte")
        parts.append(b + b"\0")
    return b"".join(parts)


class GidList(Construct):  # type: ignore[misc]
    """u16 count, then count u32 group IDs (newgroups)."""

    fast = ("var", "gids", None)

    def _parse(self, stream: Any, context: Any, path: Any) -> list[int]:
        (n,) = struct.unpack(">H", stream_read(stream, 2, path))
        return list(struct.unpack(f">{n}I", stream_read(stream, 4 * n, path)))

    def _build(self, obj: list[int], stream: Any, context: Any, path: Any) -> list[int]:
        _write(stream, _gids_encode(obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _gids_encode(gids: list[int]) -> bytes:
    return struct.pack(f">H{len(gids)}I", len(gids), *gids)


class SizedBytes(Construct):  # type: ignore[misc]
    """u16 size, then that many raw bytes (opaque)."""

    fast = ("var", "sized", None)

    def _parse(self, stream: Any, context: Any, path: Any) -> bytes:
        (n,) = struct.unpack(">H", stream_read(stream, 2, path))
        return bytes(stream_read(stream, n, path))

    def _build(self, obj: bytes, stream: Any, context: Any, path: Any) -> bytes:
        _write(stream, _sized_encode(obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _sized_encode(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + bytes(data)


class ArbItems(Construct):  # type: ignore[misc]
    """u8 unit count, then count items of the size given by ``unitfield``."""

    def __init__(self, unitfield: str) -> None:
        super().__init__()
        self.unitfield = unitfield
        self.fast = ("var", "arb", unitfield)

    def _parse(self, stream: Any, context: Any, path: Any) -> bytes:
        unit = context[self.unitfield]
        if unit not in DATA_UNIT_SIZE:
            raise _Malformed(f"bad data unit {unit}")
        (count,) = struct.unpack(">B", stream_read(stream, 1, path))
        return bytes(stream_read(stream, DATA_UNIT_SIZE[unit] * count, path))

    def _build(self, obj: bytes, stream: Any, context: Any, path: Any) -> bytes:
        _write(stream, _arb_encode(context[self.unitfield], obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _arb_encode(unit: int, data: bytes) -> bytes:
    size = DATA_UNIT_SIZE[unit]
    count, rest = divmod(len(data), size)
    if rest or count > 255:
        raise ValueError("data length is not a whole number (<256) of units")
    return bytes([count]) + bytes(data)


class SunPath(Construct):  # type: ignore[misc]
    """A NUL-terminated socket path of at most 108 bytes, no length field.

    Like OpenBSM, at most 108 bytes are scanned for the NUL; if there is none
    the 109th byte is taken as the terminator whatever it is.
    """

    fast = ("var", "sunpath", None)

    def _parse(self, stream: Any, context: Any, path: Any) -> str:
        buf = bytearray()
        while len(buf) < SUN_PATH_MAX:
            c = stream_read(stream, 1, path)
            if c == b"\0":
                return _text(bytes(buf))
            buf += c
        stream_read(stream, 1, path)
        return _text(bytes(buf))

    def _build(self, obj: str, stream: Any, context: Any, path: Any) -> str:
        _write(stream, _sunpath_encode(obj), path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise NotImplementedError


def _sunpath_encode(s: str) -> bytes:
    b = _text_bytes(s)
    if len(b) > SUN_PATH_MAX or b"\0" in b:
        raise ValueError("socket path longer than 108 bytes or containing NUL")
    return b + b"\0"


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------

_SUBJECT_IDS = (
    "auid" / Int32ub,
    "euid" / Int32ub,
    "egid" / Int32ub,
    "ruid" / Int32ub,
    "rgid" / Int32ub,
    "pid" / Int32ub,
    "sid" / Int32ub,
)


def _subject(port: Any, ex: bool) -> Struct:
    if ex:
        return Struct(
            *_SUBJECT_IDS,
            "port" / port,
            "addr_type" / Int32ub,
            "address" / AddrByType("addr_type"),
        )
    return Struct(*_SUBJECT_IDS, "port" / port, "address" / IPv4Addr())


def _header(time: Any, ex: bool) -> Struct:
    head = ("size" / Int32ub, "version" / Int8ub, "event" / Int16ub, "modifier" / Int16ub)
    if ex:
        return Struct(
            *head,
            "addr_type" / Int32ub,
            "address" / AddrByType("addr_type", strict=False),
            "sec" / time,
            "msec" / time,
        )
    return Struct(*head, "sec" / time, "msec" / time)


def _attr(dev: Any) -> Struct:
    return Struct(
        "mode" / Int32ub,
        "uid" / Int32ub,
        "gid" / Int32ub,
        "fsid" / Int32ub,
        "nodeid" / Int64ub,
        "dev" / dev,
    )


_TABLE_SOURCE: list[tuple[int, str, Struct]] = [
    (0x14, "header32", _header(Int32ub, ex=False)),
    (0x15, "header32_ex", _header(Int32ub, ex=True)),
    (0x74, "header64", _header(Int64ub, ex=False)),
    (0x79, "header64_ex", _header(Int64ub, ex=True)),
    (0x13, "trailer", Struct("magic" / Int16ub, "count" / Int32ub)),
    (0x11, "file", Struct("sec" / Int32ub, "msec" / Int32ub, "name" / NulText())),
    (0x24, "subject32", _subject(Int32ub, ex=False)),
    (0x7A, "subject32_ex", _subject(Int32ub, ex=True)),
    (0x75, "subject64", _subject(Int64ub, ex=False)),
    (0x7C, "subject64_ex", _subject(Int64ub, ex=True)),
    (0x26, "process32", _subject(Int32ub, ex=False)),
    (0x7B, "process32_ex", _subject(Int32ub, ex=True)),
    (0x77, "process64", _subject(Int64ub, ex=False)),
    (0x7D, "process64_ex", _subject(Int64ub, ex=True)),
    (0x23, "path", Struct("text" / NulText())),
    (0x28, "text", Struct("text" / NulText())),
    (0x60, "zonename", Struct("text" / NulText())),
    (0x3E, "attr32", _attr(Int32ub)),
    (0x73, "attr64", _attr(Int64ub)),
    (0x3C, "exec_args", Struct("args" / StringList())),
    (0x3D, "exec_env", Struct("env" / StringList())),
    (0x27, "return32", Struct("status" / Int8ub, "value" / Int32ub)),
    (0x72, "return64", Struct("status" / Int8ub, "value" / Int64ub)),
    (0x2D, "arg32", Struct("num" / Int8ub, "value" / Int32ub, "text" / NulText())),
    (0x71, "arg64", Struct("num" / Int8ub, "value" / Int64ub, "text" / NulText())),
    (0x2A, "in_addr", Struct("address" / IPv4Addr())),
    (
        0x7E,
        "in_addr_ex",
        Struct("addr_type" / Int32ub, "address" / AddrByType("addr_type")),
    ),
    (
        0x2B,
        "ip",
        Struct(
            "version" / Int8ub,
            "tos" / Int8ub,
            "length" / Int16ub,
            "id" / Int16ub,
            "offset" / Int16ub,
            "ttl" / Int8ub,
            "protocol" / Int8ub,
            "checksum" / Int16ub,
            "src" / IPv4Addr(),
            "dst" / IPv4Addr(),
        ),
    ),
    (0x2C, "iport", Struct("port" / Int16ub)),
    (0x2F, "seq", Struct("seq" / Int32ub)),
    (0x52, "exit", Struct("status" / Int32ub, "value" / Int32ub)),
    (0x3B, "newgroups", Struct("gids" / GidList())),
    (0x29, "opaque", Struct("data" / SizedBytes())),
    (
        0x21,
        "data",
        Struct("how" / Int8ub, "unit" / Int8ub, "data" / ArbItems("unit")),
    ),
    (0x22, "ipc", Struct("ipc_type" / Int8ub, "ipc_id" / Int32ub)),
    (
        0x32,
        "ipc_perm",
        Struct(
            "uid" / Int32ub,
            "gid" / Int32ub,
            "puid" / Int32ub,
            "pgid" / Int32ub,
            "mode" / Int32ub,
            "seq" / Int32ub,
            "key" / Int32ub,
        ),
    ),
    (
        0x2E,
        "socket",
        Struct(
            "sock_type" / Int16ub,
            "lport" / Int16ub,
            "laddr" / IPv4Addr(),
            "rport" / Int16ub,
            "raddr" / IPv4Addr(),
        ),
    ),
    (
        0x80,
        "sock_inet32",
        Struct("family" / Int16ub, "port" / Int16ub, "address" / IPv4Addr()),
    ),
    (
        0x81,
        "sock_inet128",
        Struct("family" / Int16ub, "port" / Int16ub, "address" / IPv6Addr()),
    ),
    (0x82, "sock_unix", Struct("family" / Int16ub, "path" / SunPath())),
    (
        0x7F,
        "socket_ex",
        Struct(
            "domain" / Int16ub,
            "sock_type" / Int16ub,
            "addr_type" / Int16ub,
            "lport" / Int16ub,
            "laddr" / AddrByType("addr_type"),
            "rport" / Int16ub,
            "raddr" / AddrByType("addr_type"),
        ),
    ),
    (0x84, "arg_uuid", Struct("num" / Int8ub, "uuid" / UUIDField(), "text" / NulText())),
    (0x85, "ret_uuid", Struct("num" / Int8ub, "uuid" / UUIDField(), "text" / NulText())),
    (0x39, "upriv", Struct("status" / Int8ub, "name" / NulText())),
    (0x38, "priv", Struct("set_type" / NulText(), "priv" / NulText())),
]


# --------------------------------------------------------------------------
# Code generation from the construct description.
# --------------------------------------------------------------------------

_HELPERS: dict[str, Any] = {
    "_ip4": _ip4,
    "_ip6": _ip6,
    "_uuid_str": _uuid_str,
    "_text": _text,
    "_ip4_bytes": _ip4_bytes,
    "_ip6_bytes": _ip6_bytes,
    "_uuid_bytes": _uuid_bytes,
    "_text_bytes": _text_bytes,
    "_Malformed": _Malformed,
    "_struct": struct,
    "_addr_encode": _addr_encode,
    "_nultext_encode": _nultext_encode,
    "_strlist_encode": _strlist_encode,
    "_gids_encode": _gids_encode,
    "_sized_encode": _sized_encode,
    "_arb_encode": _arb_encode,
    "_sunpath_encode": _sunpath_encode,
    "_UNIT": DATA_UNIT_SIZE,
}


def _fields(st: Struct) -> list[tuple[str, Any]]:
    out = []
    for sc in st.subcons:
        if not isinstance(sc, Renamed):
            raise TypeError(f"unnamed field in token struct: {sc!r}")
        out.append((sc.name, sc.subcon))
    return out


def _classify(sub: Any) -> tuple[Any, ...]:
    fast = getattr(sub, "fast", None)
    if fast is not None:
        return tuple(fast)
    if isinstance(sub, FormatField):
        return ("fixed", sub.fmtstr.lstrip("<>=!"), None, None)
    if isinstance(sub, Bytes) and isinstance(sub.length, int):
        return ("fixed", f"{sub.length}s", None, "bytes")
    raise TypeError(f"field construct without a fast form: {sub!r}")


# Variable-size field decoders: (code lines) with {v}=target var.
_VAR_DECODE = {
    "nultext": [
        "if p + 2 > end: raise _Malformed('truncated')",
        "n = buf[p] << 8 | buf[p + 1]",
        "p += 2",
        "if p + n > end: raise _Malformed('truncated')",
        "p += n",
        "{v} = buf[p - n:p - 1 if n and buf[p - 1] == 0 else p]",
        "{v} = {v}.decode('utf-8', 'surrogateescape')",
    ],
    "strlist": [
        "if p + 4 > end: raise _Malformed('truncated')",
        "n = _struct.unpack_from('>I', buf, p)[0]",
        "p += 4",
        "if n > end - p: raise _Malformed('truncated')",
        "{v} = []",
        "for _i in range(n):",
        "    q = buf.find(b'\\0', p, end)",
        "    if q < 0: raise _Malformed('truncated')",
        "    {v}.append(buf[p:q].decode('utf-8', 'surrogateescape'))",
        "    p = q + 1",
    ],
    "gids": [
        "if p + 2 > end: raise _Malformed('truncated')",
        "n = buf[p] << 8 | buf[p + 1]",
        "p += 2",
        "if p + 4 * n > end: raise _Malformed('truncated')",
        "{v} = list(_struct.unpack_from('>%dI' % n, buf, p))",
        "p += 4 * n",
    ],
    "sized": [
        "if p + 2 > end: raise _Malformed('truncated')",
        "n = buf[p] << 8 | buf[p + 1]",
        "p += 2",
        "if p + n > end: raise _Malformed('truncated')",
        "{v} = bytes(buf[p:p + n])",
        "p += n",
    ],
    "arb": [
        "if {arg} not in _UNIT: raise _Malformed('bad data unit %d' % {arg})",
        "if p + 1 > end: raise _Malformed('truncated')",
        "n = buf[p] * _UNIT[{arg}]",
        "p += 1",
        "if p + n > end: raise _Malformed('truncated')",
        "{v} = bytes(buf[p:p + n])",
        "p += n",
    ],
    "sunpath": [
        "q = buf.find(b'\\0', p, min(end, p + 108))",
        "if q < 0:",
        "    if p + 109 > end: raise _Malformed('truncated')",
        "    q = p + 108",
        "{v} = buf[p:q].decode('utf-8', 'surrogateescape')",
        "p = q + 1",
    ],
    "addr": [
        "if {arg} == 4:",
        "    if p + 4 > end: raise _Malformed('truncated')",
        "    {v} = _ip4(buf[p:p + 4])",
        "    p += 4",
        "elif {arg} == 16:",
        "    if p + 16 > end: raise _Malformed('truncated')",
        "    {v} = _ip6(buf[p:p + 16])",
        "    p += 16",
        "else:",
        "    {strict}",
    ],
}

_VAR_ENCODE = {
    "nultext": "_nultext_encode({v})",
    "strlist": "_strlist_encode({v})",
    "gids": "_gids_encode({v})",
    "sized": "_sized_encode({v})",
    "arb": "_arb_encode({arg}, {v})",
    "sunpath": "_sunpath_encode({v})",
    "addr": "_addr_encode({arg}, {v}, {strict})",
}


Decoder = Callable[[Any, int, int], tuple[tuple[Any, ...], int]]

#: Fixed-size tokens with converted fields (addresses) keep the values of the
#: last distinct byte strings they decoded: a session's subject or a socket
#: repeats in record after record, and the bytes fully determine the values.
VALUE_CACHE_SIZE = 4096


def _compile_decoder(name: str, st: Struct) -> Decoder:
    """Generate ``dec(buf, p, end) -> (values, new_p)`` from a token Struct.

    A token made only of fixed-size fields is one ``unpack_from``; when some
    of them need converting (addresses, UUIDs) the converted values are
    cached by the token's bytes (values are immutable tuples).
    """
    env = dict(_HELPERS)
    body: list[str] = []
    names: list[str] = []
    pending: list[tuple[str, str, Any]] = []  # (var, fmt, post)
    nstruct = 0
    fixed_only = True

    def flush() -> None:
        nonlocal nstruct
        if not pending:
            return
        fmt = ">" + "".join(f for _, f, _ in pending)
        s = struct.Struct(fmt)
        sname = f"_S{nstruct}"
        nstruct += 1
        env[sname] = s
        targets = ", ".join(v for v, _, _ in pending)
        body.append(f"if p + {s.size} > end: raise _Malformed('truncated')")
        body.append(f"{targets}, = {sname}.unpack_from(buf, p)")
        body.append(f"p += {s.size}")
        for v, _, post in pending:
            if post == "bytes":
                body.append(f"{v} = bytes({v})")
            elif post is not None:
                body.append(f"{v} = {post}({v})")
        pending.clear()

    for fname, sub in _fields(st):
        var = f"f_{fname}"
        names.append(var)
        kind = _classify(sub)
        if kind[0] == "fixed":
            pending.append((var, kind[1], kind[2]))
            continue
        fixed_only = False
        flush()
        vkind, arg = kind[1], kind[2]
        strict = "raise _Malformed('bad address type %d' % {a})"
        fmtargs: dict[str, str] = {"v": var}
        if vkind == "addr":
            tf, is_strict = arg
            fmtargs["arg"] = f"f_{tf}"
            fmtargs["strict"] = strict.format(a=f"f_{tf}") if is_strict else f"{var} = None"
        elif vkind == "arb":
            fmtargs["arg"] = f"f_{arg}"
        for ln in _VAR_DECODE[vkind]:
            body.append(ln.format(**fmtargs))
    tup = ", ".join(names) + ("," if len(names) == 1 else "")
    lines = ["def dec(buf, p, end):"]
    if fixed_only:
        fmt = ">" + "".join(f for _, f, _ in pending)
        s = struct.Struct(fmt)
        env["_S"] = s
        if all(post is None for _, _, post in pending):
            # Nothing to convert: the unpacked tuple is the values.
            lines.append(f"    if p + {s.size} > end: raise _Malformed('truncated')")
            lines.append(f"    return _S.unpack_from(buf, p), p + {s.size}")
        else:
            env["_cache"] = {}
            env["_CACHE_SIZE"] = VALUE_CACHE_SIZE
            flush()
            lines += [
                f"    q = p + {s.size}",
                "    if q > end: raise _Malformed('truncated')",
                "    key = bytes(buf[p:q])",
                "    v = _cache.get(key)",
                "    if v is not None: return v, q",
            ]
            lines += ["    " + ln for ln in body]
            lines += [
                f"    v = ({tup})",
                "    if len(_cache) >= _CACHE_SIZE: _cache.clear()",
                "    _cache[key] = v",
                "    return v, p",
            ]
    else:
        flush()
        lines += ["    " + ln for ln in body]
        lines.append(f"    return ({tup}), p")
    src = "\n".join(lines)
    code = compile(src, f"<bsm decoder {name}>", "exec")
    exec(code, env)
    fn: Decoder = env["dec"]
    fn.__doc__ = src
    return fn


def _compile_encoder(name: str, tid: int, st: Struct) -> Callable[..., bytes]:
    """Generate ``enc(*values) -> bytes`` (token ID included) from a Struct."""
    fields = _fields(st)
    params = [f"f_{n}" for n, _ in fields]
    lines = [f"def enc({', '.join(params)}):", f"    out = [b'\\x{tid:02x}']"]
    env = dict(_HELPERS)
    pending: list[tuple[str, str, Any]] = []
    nstruct = 0

    def flush() -> None:
        nonlocal nstruct
        if not pending:
            return
        s = struct.Struct(">" + "".join(f for _, f, _ in pending))
        sname = f"_S{nstruct}"
        nstruct += 1
        env[sname] = s
        args = []
        for v, _, pre in pending:
            args.append(f"{pre}({v})" if pre not in (None, "bytes") else v)
        lines.append(f"    out.append({sname}.pack({', '.join(args)}))")
        pending.clear()

    for fname, sub in fields:
        var = f"f_{fname}"
        kind = _classify(sub)
        if kind[0] == "fixed":
            pending.append((var, kind[1], kind[3]))
            continue
        flush()
        vkind, arg = kind[1], kind[2]
        fmtargs = {"v": var, "arg": "", "strict": ""}
        if vkind == "addr":
            fmtargs["arg"] = f"f_{arg[0]}"
            fmtargs["strict"] = repr(bool(arg[1]))
        elif vkind == "arb":
            fmtargs["arg"] = f"f_{arg}"
        lines.append(f"    out.append({_VAR_ENCODE[vkind].format(**fmtargs)})")
    flush()
    lines.append("    return b''.join(out)")
    src = "\n".join(lines)
    exec(compile(src, f"<bsm encoder {name}>", "exec"), env)
    fn: Callable[..., bytes] = env["enc"]
    fn.__doc__ = src
    return fn


class TokenSpec:
    """One row of the token table: ID, name, construct Struct and codecs."""

    __slots__ = ("decode", "encode", "fields", "id", "index", "name", "struct")

    def __init__(self, tid: int, name: str, st: Struct) -> None:
        self.id = tid
        self.name = name
        self.struct = st
        self.fields: tuple[str, ...] = tuple(n for n, _ in _fields(st))
        self.index = {n: i for i, n in enumerate(self.fields)}
        self.decode = _compile_decoder(name, st)
        self.encode = _compile_encoder(name, tid, st)

    def parse_construct(self, data: bytes) -> tuple[Any, ...]:
        """Parse the token body (after the ID byte) with construct itself."""
        c = self.struct.parse(data)
        return tuple(c[n] for n in self.fields)

    def build(self, values: Iterable[Any]) -> bytes:
        """Build the whole token (ID byte included) with construct itself."""
        body: bytes = self.struct.build(dict(zip(self.fields, values, strict=True)))
        return bytes([self.id]) + body

    def __repr__(self) -> str:
        return f"<TokenSpec {self.name} 0x{self.id:02x}>"


class _UnknownSpec:
    """Pseudo-spec for token IDs the table does not know (printed as unknown)."""

    id = -1
    name = "unknown"
    fields = ("token_id", "data")
    index: ClassVar[dict[str, int]] = {"token_id": 0, "data": 1}

    @staticmethod
    def encode(token_id: int, data: bytes) -> bytes:
        return bytes([token_id]) + bytes(data)

    build = None


UNKNOWN = _UnknownSpec()

TOKEN_TABLE: tuple[TokenSpec, ...] = tuple(TokenSpec(t, n, s) for t, n, s in _TABLE_SOURCE)
TOKEN_BY_ID: dict[int, TokenSpec] = {s.id: s for s in TOKEN_TABLE}
TOKEN_BY_NAME: dict[str, TokenSpec] = {s.name: s for s in TOKEN_TABLE}

HEADER_IDS = frozenset({0x14, 0x15, 0x74, 0x79})
TRAILER_ID = 0x13
FILE_ID = 0x11
TRAILER_MAGIC = 0xB105


class Token:
    """A decoded (or to-be-encoded) token.

    ``name`` is the table name (``"subject32"``, ``"exec_args"``...), ``id``
    the token ID byte, and every field of the token's Struct is readable as
    an attribute (``tok.auid``, ``tok.text``, ``tok.args``).  ``offset`` is
    the absolute byte offset the token was read from (-1 if built).
    """

    __slots__ = ("offset", "spec", "values")

    spec: TokenSpec | _UnknownSpec
    values: tuple[Any, ...]
    offset: int

    def __init__(
        self, spec: TokenSpec | _UnknownSpec, values: tuple[Any, ...], offset: int = -1
    ) -> None:
        self.spec = spec
        self.values = values
        self.offset = offset

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def id(self) -> int:
        if self.spec is UNKNOWN:
            return int(self.values[0])
        return self.spec.id

    def __getattr__(self, attr: str) -> Any:
        if attr in ("spec", "values", "offset"):
            raise AttributeError(attr)
        idx = self.spec.index.get(attr)
        if idx is None:
            raise AttributeError(f"{self.spec.name} token has no field {attr!r}")
        return self.values[idx]

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (token name under ``"token"``)."""
        d: dict[str, Any] = {"token": self.name}
        d.update(zip(self.spec.fields, self.values, strict=True))
        return d

    def encode(self) -> bytes:
        """The token's bytes (fast encoder generated from the table)."""
        data: bytes = self.spec.encode(*self.values)
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return self.spec is other.spec and self.values == other.values

    def __hash__(self) -> int:
        return hash((self.spec.name, repr(self.values)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in zip(self.spec.fields, self.values, strict=True))
        return f"Token({self.name}: {inner})"


# Fields filled in automatically by make_token when omitted.
_DEFAULTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "version": lambda f: 11,
    "modifier": lambda f: 0,
    "size": lambda f: 0,
    "msec": lambda f: 0,
    "magic": lambda f: TRAILER_MAGIC,
    "count": lambda f: 0,
}


def make_token(name: str, /, **fields: Any) -> Token:
    """Build a :class:`Token` from field values.

    ``addr_type`` is derived from the address when omitted; header ``size``
    and trailer ``count`` may be left out (``encode_record`` fills them).
    Example: ``make_token("path", text="/bin/ls")``.
    """
    spec = TOKEN_BY_NAME[name]
    values = []
    for f in spec.fields:
        if f in fields:
            values.append(fields.pop(f))
        elif f == "addr_type":
            addr = fields.get("address", fields.get("laddr"))
            values.append(addr_type_for(addr) if addr is not None else AU_IPV4)
        elif f == "address" and "addr_type" in spec.fields:
            values.append(None if name.startswith("header") else "0.0.0.0")
        elif f in _DEFAULTS:
            values.append(_DEFAULTS[f](fields))
        else:
            raise TypeError(f"{name} token needs field {f!r}")
    if fields:
        raise TypeError(f"{name} token has no field(s) {sorted(fields)}")
    if name.startswith("header") and "addr_type" in spec.index:
        i = spec.index["addr_type"]
        if values[spec.index["address"]] is None and values[i] in (AU_IPV4, AU_IPV6):
            values[i] = 0
    return Token(spec, tuple(values))
