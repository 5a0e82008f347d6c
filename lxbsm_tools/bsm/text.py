"""praudit text: OpenBSM's output formats, character for character.

:class:`PrauditFormatter` turns records and file tokens into the text
OpenBSM's ``praudit`` prints in each mode (default, ``-l``, ``-r``, ``-s``,
``-n``, ``-x``, ``-d``); the formats are in bsm-format.md section 1c.  Where
praudit has a documented bug the text is what it meant; docs/praudit.md
lists every such place.

Strings from the trail are ``str`` decoded with ``surrogateescape``, so
encoding the output the same way reproduces the trail's bytes exactly.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import re
import struct
import time
from collections.abc import Callable

from .bsmerrno import bsm_to_errno
from .record import Record
from .tables import EventTable
from .tokens import TOKEN_TABLE, UNKNOWN, Token, TokenSpec, _UnknownSpec

__all__ = ["PrauditFormatter", "record_json"]

AUDIT_MAX_ARGS = 128

_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_CSTYLE = {"\r": "\\r", "\b": "\\b", "\a": "\\a", "\v": "\\v", "\f": "\\f", "\\": "\\\\"}


def _vis_char(ch: str) -> str:
    """One character as vis(3) with VIS_CSTYLE encodes it (XML exec args)."""
    if ch in _XML_ESCAPES:
        return _XML_ESCAPES[ch]
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a raw byte >= 0x80 (surrogateescape)
        o -= 0xDC00
    elif o > 0x7F:  # a decoded non-ASCII character: vis works on its bytes
        return "".join(_vis_char(chr(0xDC00 + b)) for b in ch.encode("utf-8"))
    if 0x21 <= o <= 0x7E and ch != "\\":
        return ch
    if ch in (" ", "\t", "\n"):
        return ch
    if ch in _CSTYLE:
        return _CSTYLE[ch]
    low = o & 0x7F
    out = "\\"
    if o & 0x80:
        if low == 0x20:  # vis(3) writes a meta space in octal
            return f"\\{o:03o}"
        out += "M"
    if low < 0x20 or low == 0x7F:
        out += "^" + ("?" if low == 0x7F else chr(low + 0x40))
    else:
        # \M-C for 0xC3, as vis(3); the character after "M-" is escaped for
        # XML (0xBC is \M-&lt;), which praudit does not do.
        c = chr(low)
        out += "-" + _XML_ESCAPES.get(c, c)
    return out


def xml_string(s: str) -> str:
    """praudit's print_xml_string: XML entities and vis(3) C-style escapes."""
    i = s.find("\0")
    if i >= 0:
        s = s[:i]
    if s.isascii() and s.isprintable() and not any(c in s for c in "&<>\"'\\"):
        return s
    return "".join(_vis_char(c) for c in s)


# Characters that print as they are in XML text and attribute values; anything
# else goes through xml_safe.
_XML_UNSAFE = re.compile("[^\t\n\x20\x21\x23-\x25\x28-\x3b\x3d\x3f-\x7e]")


def _xml_safe_char(ch: str) -> str:
    if ch in _XML_ESCAPES:
        return _XML_ESCAPES[ch]
    o = ord(ch)
    if o == 0x0D or o == 0x7F or (0x80 <= o < 0xD800) or (0xE000 <= o <= 0xFFFD) or o > 0xFFFF:
        return ch  # allowed in XML 1.0 (valid UTF-8 prints as it is, as in praudit)
    return _vis_char(ch)  # C0 controls, bytes that are not UTF-8 (surrogates), U+FFFE/FFFF


def xml_safe(s: str) -> str:
    """A trail string as XML text or attribute value: well-formed for any bytes.

    praudit prints paths, texts, names... raw in XML, so ``<``, ``&`` or a
    control byte make its output invalid; here the XML specials become
    entities and the characters XML 1.0 cannot carry (C0 controls, bytes that
    are not UTF-8) vis(3) escapes (``\\^@`` for NUL, ``\\M-)`` for 0xA9).
    """
    if _XML_UNSAFE.search(s) is None:
        return s
    return "".join(_xml_safe_char(c) for c in s)


def _nonul(s: str) -> str:
    return s.replace("\0", "") if "\0" in s else s


def _s32(v: int) -> int:
    return v - 0x100000000 if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - 0x10000000000000000 if v & 0x8000000000000000 else v


def _hash_x(v: int) -> str:
    """C's ``%#x``: no prefix for zero."""
    return f"{v:#x}" if v else "0"


def _mem(data: bytes) -> str:
    return "0x" + data.hex() if data else ""


def _addr_ex(t: int, address: str | None) -> str:
    if t in (4, 16) and address is not None:
        return address
    return "invalid"


_IPC_TYPES = {1: "Message IPC", 2: "Semaphore IPC", 3: "Shared Memory IPC"}
_ARB_HOW = {0: ("binary", " %c"), 1: ("octal", " %o"), 2: ("decimal", " %d"), 3: ("hex", " %x")}
_ARB_UNIT = {0: ("byte", 1, "B"), 1: ("short", 2, "H"), 2: ("int", 4, "I"), 3: ("int64", 8, "Q")}


def _arb_items(how: int, unit: int, data: bytes) -> str:
    """The data token's items as praudit prints them on little-endian Linux."""
    _, size, code = _ARB_UNIT[unit]
    n = len(data) // size
    # au_to_data() stores the caller's memory as is and praudit reads it back
    # with host byte order; on x86/arm64 Linux that is little-endian.
    items = struct.unpack(f"<{n}{code}", data[: n * size]) if n else ()
    if how == 4:
        return "".join(chr(0xDC00 + (v & 0xFF)) if v & 0x80 else chr(v & 0xFF) for v in items)
    out = []
    for v in items:
        v32 = v & 0xFFFFFFFF if size >= 4 else v
        if how == 0:
            c = v32 & 0xFF
            out.append(" " + (chr(0xDC00 + c) if c & 0x80 else chr(c)))
        elif how == 1:
            out.append(f" {v32:o}")
        elif how == 2:
            out.append(f" {_s32(v32)}")
        else:
            out.append(f" {v32:x}")
    return "".join(out)


# Token type names in the plain modes (print_tok_type's ``tokname``).
PLAIN_NAME = {
    "header32": "header",
    "header64": "header",
    "header32_ex": "header_ex",
    "header64_ex": "header_ex",
    "trailer": "trailer",
    "arg32": "argument",
    "arg64": "argument",
    "arg_uuid": "arg_uuid",
    "ret_uuid": "ret_uuid",
    "data": "arbitrary",
    "attr32": "attribute",
    "attr64": "attribute",
    "exit": "exit",
    "exec_args": "exec arg",
    "exec_env": "exec env",
    "file": "file",
    "newgroups": "group",
    "in_addr": "ip addr",
    "in_addr_ex": "ip addr ex",
    "ip": "ip",
    "ipc": "IPC",
    "ipc_perm": "IPC perm",
    "iport": "ip port",
    "opaque": "opaque",
    "path": "path",
    "process32": "process",
    "process64": "process",
    "process32_ex": "process_ex",
    "process64_ex": "process_ex",
    "return32": "return",
    "return64": "return",
    "seq": "sequence",
    "socket": "socket",
    "sock_inet32": "socket-inet",
    "sock_inet128": "socket-inet6",
    "sock_unix": "socket-unix",
    "subject32": "subject",
    "subject64": "subject",
    "subject32_ex": "subject_ex",
    "subject64_ex": "subject_ex",
    "text": "text",
    "socket_ex": "socket",
    "zonename": "zone",
    "upriv": "use of privilege",
    "priv": "privilege",
    "unknown": "unknown",
}


# Tokens whose values are unhashable (lists) or differ in nearly every record.
_UNCACHED = frozenset(
    {
        "header32",
        "header32_ex",
        "header64",
        "header64_ex",
        "exec_args",
        "exec_env",
        "newgroups",
        "file",
        "unknown",
        "seq",
    }
)


#: Texts kept per token type (the cache is emptied when it reaches this).
_TEXT_CACHE_SIZE = 16384


class PrauditFormatter:
    """praudit's text for records, in one of its modes.

    ``raw`` (-r), ``short`` (-s), ``xml`` (-x), ``oneline`` (-l),
    ``delim`` (-d), ``resolve`` (False with -n).
    """

    def __init__(
        self,
        events: EventTable,
        *,
        raw: bool = False,
        short: bool = False,
        xml: bool = False,
        oneline: bool = False,
        delim: str = ",",
        resolve: bool = True,
    ) -> None:
        self.events = events
        self.raw = raw
        self.short = short
        self.xml = xml
        self.oneline = oneline
        self.delim = delim
        self.resolve = resolve and not raw
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._event_cache: dict[int, str] = {}
        self._time_cache: dict[int, str] = {}
        self._header_cache: dict[tuple[object, ...], str] = {}
        name = "_x_" if xml else "_p_"
        self._fmt: dict[str, Callable[[Token], str]] = {}
        for tok_name in PLAIN_NAME:
            self._fmt[tok_name] = getattr(self, name + tok_name)
        # Per token spec: its formatter, and the cache of its texts by values
        # (None for the tokens in _UNCACHED).
        self._spec_fmt: dict[object, Callable[[Token], str]] = {}
        self._spec_cache: dict[object, dict[tuple[object, ...], str] | None] = {}
        specs: tuple[TokenSpec | _UnknownSpec, ...] = (*TOKEN_TABLE, UNKNOWN)
        for spec in specs:
            self._spec_fmt[spec] = self._fmt[spec.name]
            self._spec_cache[spec] = None if spec.name in _UNCACHED else {}
        self._after = "" if (oneline and xml) else (delim if oneline else "\n")

    # -- field helpers ----------------------------------------------------

    def user(self, uid: int) -> str:
        if not self.resolve:
            return str(_s32(uid))
        s = self._users.get(uid)
        if s is None:
            try:
                s = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                s = str(_s32(uid))
            self._users[uid] = s
        return s

    def group(self, gid: int) -> str:
        if not self.resolve:
            return str(_s32(gid))
        s = self._groups.get(gid)
        if s is None:
            try:
                s = grp.getgrgid(gid).gr_name
            except (KeyError, OverflowError):
                s = str(_s32(gid))
            self._groups[gid] = s
        return s

    def event(self, ev: int) -> str:
        s = self._event_cache.get(ev)
        if s is None:
            e = self.events.get(ev)
            if e is None or self.raw:
                s = str(ev)
            elif self.short:
                s = e.name
            else:
                s = e.description
            self._event_cache[ev] = s
        return s

    def sec(self, sec: int, wide: bool = False) -> str:
        if self.raw:
            return str(sec & 0xFFFFFFFF)
        s = self._time_cache.get(sec)
        if s is None:
            try:
                s = time.ctime(sec)
            except (OverflowError, ValueError, OSError):
                s = str(sec)
            if len(self._time_cache) > 4096:
                self._time_cache.clear()
            self._time_cache[sec] = s
        return s

    def msec(self, ms: int) -> str:
        ms &= 0xFFFFFFFF
        return str(ms) if self.raw else f" + {ms} msec"

    def retval(self, status: int) -> str:
        if self.raw:
            return str(status)
        err = bsm_to_errno(status)
        if err is None:
            return f"failure: Unknown error: {status}"
        if err == 0:
            return "success"
        return f"failure : {os.strerror(err)}"

    def tokname(self, tok: Token) -> str:
        return str(tok.id) if self.raw else PLAIN_NAME[tok.spec.name]

    def _plain(self, tok: Token, fields: list[str]) -> str:
        d = self.delim
        head = str(tok.id) if self.raw else PLAIN_NAME[tok.spec.name]
        if not fields:
            return head
        return head + d + d.join(fields)

    # -- whole records --------------------------------------------------------

    def token(self, tok: Token) -> str:
        """The text praudit prints for one token (without the separator)."""
        return self._fmt[tok.spec.name](tok)

    def record(self, rec: Record) -> str:
        """One record: tokens separated as praudit does, newline-terminated."""
        fmts = self._spec_fmt
        caches = self._spec_cache
        parts: list[str] = []
        append = parts.append
        for t in rec.tokens:
            spec = t.spec
            cache = caches[spec]
            if cache is None:
                append(fmts[spec](t))
                continue
            # The same token values always print the same text (names and
            # events are looked up once per formatter), so identical tokens
            # (a session's subject, common paths) are formatted once.
            v = t.values
            s = cache.get(v)
            if s is None:
                if len(cache) >= _TEXT_CACHE_SIZE:
                    cache.clear()
                s = cache[v] = fmts[spec](t)
            append(s)
        after = self._after
        if self.oneline:
            return after.join(parts) + after + "\n"
        return after.join(parts) + after

    def file_token(self, tok: Token) -> str:
        """A stand-alone file token between records (printed like a record)."""
        return self.token(tok) + self._after + ("\n" if self.oneline else "")

    def xml_header(self) -> str:
        return "<?xml version='1.0' ?>\n<audit>\n"

    def xml_footer(self) -> str:
        return "</audit>\n"

    # -- plain formats (print_*_tok, non-XML branch) --------------------------

    def _p_header32(self, t: Token) -> str:
        v = t.values
        # Everything before the time repeats from record to record.
        key = (t.spec, v[0], v[1], v[2], v[3])
        head = self._header_cache.get(key)
        if head is None:
            if len(self._header_cache) >= _TEXT_CACHE_SIZE:
                self._header_cache.clear()
            head = self._header_cache[key] = self._plain(
                t, [str(v[0]), str(v[1]), self.event(v[2]), str(v[3]), ""]
            )
        return head + self.sec(v[4]) + self.delim + self.msec(v[5])

    _p_header64 = _p_header32

    def _p_header32_ex(self, t: Token) -> str:
        v = t.values
        return self._plain(
            t,
            [
                str(v[0]),
                str(v[1]),
                self.event(v[2]),
                str(v[3]),
                _addr_ex(v[4], v[5]),
                self.sec(v[6]),
                self.msec(v[7]),
            ],
        )

    _p_header64_ex = _p_header32_ex

    def _p_trailer(self, t: Token) -> str:
        return self._plain(t, [str(t.values[1])])

    def _p_arg32(self, t: Token) -> str:
        n, val, text = t.values
        return self._plain(t, [str(n), f"0x{val:x}", _nonul(text)])

    _p_arg64 = _p_arg32

    def _p_arg_uuid(self, t: Token) -> str:
        n, u, text = t.values
        return self._plain(t, [str(n), u, _nonul(text)])

    _p_ret_uuid = _p_arg_uuid

    def _p_data(self, t: Token) -> str:
        how, unit, data = t.values
        head = self.tokname(t) + self.delim
        if how not in _ARB_HOW and how != 4:
            return head
        howname = "string" if how == 4 else _ARB_HOW[how][0]
        unitname, size, _ = _ARB_UNIT[unit]
        d = self.delim
        return (
            head
            + howname
            + d
            + unitname
            + d
            + str(len(data) // size)
            + d
            + _arb_items(how, unit, data)
        )

    def _p_attr32(self, t: Token) -> str:
        mode, uid, gid, fsid, nodeid, dev = t.values
        return self._plain(
            t,
            [f"{mode:o}", self.user(uid), self.group(gid), str(fsid), str(_s64(nodeid)), str(dev)],
        )

    _p_attr64 = _p_attr32

    def _p_exit(self, t: Token) -> str:
        status, value = t.values
        return self._plain(t, [f"Error {status}", str(value)])

    def _p_exec_args(self, t: Token) -> str:
        return self._plain(t, list(t.values[0][:AUDIT_MAX_ARGS]))

    _p_exec_env = _p_exec_args

    def _p_file(self, t: Token) -> str:
        sec, ms, name = t.values
        return self._plain(t, [self.sec(sec), self.msec(ms), _nonul(name)])

    def _p_newgroups(self, t: Token) -> str:
        return self._plain(t, [self.group(g) for g in t.values[0]])

    def _p_in_addr(self, t: Token) -> str:
        return self._plain(t, [t.values[0]])

    def _p_in_addr_ex(self, t: Token) -> str:
        return self._plain(t, [_addr_ex(t.values[0], t.values[1])])

    def _p_ip(self, t: Token) -> str:
        v = t.values
        return self._plain(
            t,
            [
                f"0x{v[0]:02x}",
                f"0x{v[1]:02x}",
                str(v[2]),
                str(v[3]),
                str(v[4]),
                f"0x{v[5]:02x}",
                f"0x{v[6]:02x}",
                str(v[7]),
                v[8],
                v[9],
            ],
        )

    def _ipctype(self, ty: int) -> str:
        if self.raw:
            return str(ty)
        return _IPC_TYPES.get(ty, str(ty))

    def _p_ipc(self, t: Token) -> str:
        return self._plain(t, [self._ipctype(t.values[0]), str(t.values[1])])

    def _p_ipc_perm(self, t: Token) -> str:
        uid, gid, puid, pgid, mode, seq, key = t.values
        return self._plain(
            t,
            [
                self.user(uid),
                self.group(gid),
                self.user(puid),
                self.group(pgid),
                f"{mode:o}",
                str(seq),
                str(key),
            ],
        )

    def _p_iport(self, t: Token) -> str:
        return self._plain(t, [_hash_x(t.values[0])])

    def _p_opaque(self, t: Token) -> str:
        data = t.values[0]
        return self._plain(t, [str(len(data)), _mem(data)])

    def _p_path(self, t: Token) -> str:
        return self._plain(t, [_nonul(t.values[0])])

    _p_text = _p_path
    _p_zonename = _p_path

    def _subject_fields(self, t: Token) -> list[str]:
        v = t.values
        addr = v[-1] if len(v) == 9 else _addr_ex(v[8], v[9])
        return [
            self.user(v[0]),
            self.user(v[1]),
            self.group(v[2]),
            self.user(v[3]),
            self.group(v[4]),
            str(v[5]),
            str(v[6]),
            str(v[7]),
            addr,
        ]

    def _p_subject32(self, t: Token) -> str:
        return self._plain(t, self._subject_fields(t))

    _p_subject64 = _p_subject32
    _p_subject32_ex = _p_subject32
    _p_subject64_ex = _p_subject32
    _p_process32 = _p_subject32
    _p_process64 = _p_subject32
    _p_process32_ex = _p_subject32
    _p_process64_ex = _p_subject32

    def _p_return32(self, t: Token) -> str:
        return self._plain(t, [self.retval(t.values[0]), str(t.values[1])])

    def _p_return64(self, t: Token) -> str:
        return self._plain(t, [self.retval(t.values[0]), str(_s64(t.values[1]))])

    def _p_seq(self, t: Token) -> str:
        return self._plain(t, [str(t.values[0])])

    def _p_socket(self, t: Token) -> str:
        ty, lport, laddr, rport, raddr = t.values
        return self._plain(t, [str(ty), str(lport), laddr, str(rport), raddr])

    def _p_sock_inet32(self, t: Token) -> str:
        fam, port, addr = t.values
        return self._plain(t, [str(fam), str(port), addr])

    _p_sock_inet128 = _p_sock_inet32

    def _p_sock_unix(self, t: Token) -> str:
        return self._plain(t, [str(t.values[0]), t.values[1]])

    def _p_socket_ex(self, t: Token) -> str:
        dom, ty, at, lport, laddr, rport, raddr = t.values
        return self._plain(
            t,
            [
                _hash_x(dom),
                _hash_x(ty),
                _hash_x(lport),
                _addr_ex(at, laddr),
                _hash_x(rport),
                _addr_ex(at, raddr),
            ],
        )

    def _p_upriv(self, t: Token) -> str:
        status, name = t.values
        s = "successful use of priv" if status else "failed use of priv"
        return self._plain(t, [s, _nonul(name)])

    def _p_priv(self, t: Token) -> str:
        return self._plain(t, [_nonul(t.values[0]), _nonul(t.values[1])])

    def _p_unknown(self, t: Token) -> str:
        head = str(t.values[0]) if self.raw else "unknown"
        return head + self.delim + _mem(t.values[1])

    # -- XML formats ----------------------------------------------------------

    @staticmethod
    def _attrs(pairs: list[tuple[str, str]]) -> str:
        return "".join(f'{k}="{xml_safe(v)}" ' for k, v in pairs)

    def _x_header32(self, t: Token) -> str:
        v = t.values
        key = (t.spec, v[1], v[2], v[3])
        head = self._header_cache.get(key)
        if head is None:
            if len(self._header_cache) >= _TEXT_CACHE_SIZE:
                self._header_cache.clear()
            head = self._header_cache[key] = "<record " + self._attrs(
                [("version", str(v[1])), ("event", self.event(v[2])), ("modifier", str(v[3]))]
            )
        return head + self._attrs([("time", self.sec(v[4])), ("msec", self.msec(v[5]))]) + ">"

    _x_header64 = _x_header32

    def _x_header32_ex(self, t: Token) -> str:
        v = t.values
        return (
            "<record "
            + self._attrs(
                [
                    ("version", str(v[1])),
                    ("event", self.event(v[2])),
                    ("modifier", str(v[3])),
                    ("host", _addr_ex(v[4], v[5])),
                    ("time", self.sec(v[6])),
                    ("msec", self.msec(v[7])),
                ]
            )
            + ">"
        )

    _x_header64_ex = _x_header32_ex

    def _x_trailer(self, t: Token) -> str:
        return "</record>"

    def _x_arg32(self, t: Token) -> str:
        n, val, text = t.values
        attrs = [("arg-num", str(n)), ("value", f"0x{val:x}"), ("desc", _nonul(text))]
        return "<argument " + self._attrs(attrs) + "/>"

    _x_arg64 = _x_arg32

    def _x_arg_uuid(self, t: Token) -> str:
        n, u, text = t.values
        tag = t.spec.name
        attrs = [(f"{tag}-num", str(n)), ("uuid", u), ("desc", _nonul(text))]
        return f"<{tag} " + self._attrs(attrs) + "/>"

    _x_ret_uuid = _x_arg_uuid

    def _x_data(self, t: Token) -> str:
        how, unit, data = t.values
        if (how not in _ARB_HOW and how != 4) or unit not in _ARB_UNIT:
            # praudit prints an unterminated "<arbitrary ": an empty element here.
            return f'<arbitrary print="{how}" unit="{unit}" />'
        howname = "string" if how == 4 else _ARB_HOW[how][0]
        _, size, _ = _ARB_UNIT[unit]
        attrs = [("print", howname), ("type", str(size)), ("count", str(len(data) // size))]
        items = xml_safe(_arb_items(how, unit, data))
        return "<arbitrary " + self._attrs(attrs) + ">" + items + "</arbitrary>"

    def _x_attr32(self, t: Token) -> str:
        mode, uid, gid, fsid, nodeid, dev = t.values
        attrs = [
            ("mode", f"{mode:o}"),
            ("uid", self.user(uid)),
            ("gid", self.group(gid)),
            ("fsid", str(fsid)),
            ("nodeid", str(_s64(nodeid))),
            ("device", str(dev)),
        ]
        return "<attribute " + self._attrs(attrs) + "/>"

    _x_attr64 = _x_attr32

    def _x_exit(self, t: Token) -> str:
        status, value = t.values
        return (
            "<exit " + self._attrs([("errval", f"Error {status}"), ("retval", str(value))]) + "/>"
        )

    def _x_exec_args(self, t: Token) -> str:
        items = "".join(f"<arg>{xml_string(a)}</arg>" for a in t.values[0][:AUDIT_MAX_ARGS])
        return f"<exec_args>{items}</exec_args>"

    def _x_exec_env(self, t: Token) -> str:
        items = "".join(f"<env>{xml_string(a)}</env>" for a in t.values[0][:AUDIT_MAX_ARGS])
        return f"<exec_env>{items}</exec_env>"

    def _x_file(self, t: Token) -> str:
        sec, ms, name = t.values
        attrs = self._attrs([("time", self.sec(sec)), ("msec", self.msec(ms))])
        return f"<file {attrs}>{xml_safe(_nonul(name))}</file>"

    def _x_newgroups(self, t: Token) -> str:
        # praudit prints </group> after every gid (docs/praudit.md); every gid
        # is printed, as praudit does (it has no limit, and overflows its
        # 16-entry array beyond 16).
        gids = "".join(f"<gid>{self.group(g)}</gid>" for g in t.values[0])
        return f"<group>{gids}</group>"

    def _x_in_addr(self, t: Token) -> str:
        return f"<ip_address>{t.values[0]}</ip_address>"

    def _x_in_addr_ex(self, t: Token) -> str:
        return f"<ip_address>{_addr_ex(t.values[0], t.values[1])}</ip_address>"

    def _x_ip(self, t: Token) -> str:
        v = t.values
        attrs = [
            ("version", f"0x{v[0]:02x}"),
            ("service_type", f"0x{v[1]:02x}"),
            ("len", str(v[2])),
            ("id", str(v[3])),
            ("offset", str(v[4])),
            ("time_to_live", f"0x{v[5]:02x}"),
            ("protocol", f"0x{v[6]:02x}"),
            ("cksum", str(v[7])),
            ("src_addr", v[8]),
            ("dest_addr", v[9]),
        ]
        return "<ip " + self._attrs(attrs) + "/>"

    def _x_ipc(self, t: Token) -> str:
        attrs = [("ipc-type", self._ipctype(t.values[0])), ("ipc-id", str(t.values[1]))]
        return "<IPC " + self._attrs(attrs) + "/>"

    def _x_ipc_perm(self, t: Token) -> str:
        uid, gid, puid, pgid, mode, seq, key = t.values
        attrs = [
            ("uid", self.user(uid)),
            ("gid", self.group(gid)),
            ("creator-uid", self.user(puid)),
            ("creator-gid", self.group(pgid)),
            ("mode", f"{mode:o}"),
            ("seq", str(seq)),
            ("key", str(key)),
        ]
        return "<IPC_perm " + self._attrs(attrs) + "/>"

    def _x_iport(self, t: Token) -> str:
        return f"<ip_port>{_hash_x(t.values[0])}</ip_port>"

    def _x_opaque(self, t: Token) -> str:
        return f"<opaque>{_mem(t.values[0])}</opaque>"

    def _x_path(self, t: Token) -> str:
        return f"<path>{xml_safe(_nonul(t.values[0]))}</path>"

    def _x_text(self, t: Token) -> str:
        return f"<text>{xml_safe(_nonul(t.values[0]))}</text>"

    def _x_zonename(self, t: Token) -> str:
        return '<zone name="' + xml_safe(_nonul(t.values[0])) + '" />'

    def _x_subject32(self, t: Token) -> str:
        f = self._subject_fields(t)
        tag = "subject" if t.spec.name.startswith("subject") else "process"
        attrs = [
            ("audit-uid", f[0]),
            ("uid", f[1]),
            ("gid", f[2]),
            ("ruid", f[3]),
            ("rgid", f[4]),
            ("pid", f[5]),
            ("sid", f[6]),
            # Only subject32 puts a space between port and address in
            # praudit (bsm-format.md bug 3); every flavour gets one here.
            ("tid", f"{f[7]} {f[8]}"),
        ]
        return f"<{tag} " + self._attrs(attrs) + "/>"

    _x_subject64 = _x_subject32
    _x_subject32_ex = _x_subject32
    _x_subject64_ex = _x_subject32
    _x_process32 = _x_subject32
    _x_process64 = _x_subject32
    _x_process32_ex = _x_subject32
    _x_process64_ex = _x_subject32

    def _x_return32(self, t: Token) -> str:
        attrs = [("errval", self.retval(t.values[0])), ("retval", str(t.values[1]))]
        return "<return " + self._attrs(attrs) + "/>"

    def _x_return64(self, t: Token) -> str:
        attrs = [("errval", self.retval(t.values[0])), ("retval", str(_s64(t.values[1])))]
        return "<return " + self._attrs(attrs) + "/>"

    def _x_seq(self, t: Token) -> str:
        return '<sequence seq-num="' + str(t.values[0]) + '" />'

    def _x_socket(self, t: Token) -> str:
        ty, lport, laddr, rport, raddr = t.values
        attrs = [
            ("sock_type", str(ty)),
            ("lport", str(lport)),
            ("laddr", laddr),
            ("fport", str(rport)),
            ("faddr", raddr),
        ]
        return "<socket " + self._attrs(attrs) + "/>"

    def _x_sock_inet32(self, t: Token) -> str:
        fam, port, addr = t.values
        tag = "socket-inet" if t.spec.name == "sock_inet32" else "socket-inet6"
        attrs = [("type", str(fam)), ("port", str(port)), ("addr", addr)]
        return f"<{tag} " + self._attrs(attrs) + "/>"

    _x_sock_inet128 = _x_sock_inet32

    def _x_sock_unix(self, t: Token) -> str:
        attrs = [("type", str(t.values[0])), ("port", ""), ("addr", t.values[1])]
        return "<socket-unix " + self._attrs(attrs) + "/>"

    def _x_socket_ex(self, t: Token) -> str:
        dom, ty, at, lport, laddr, rport, raddr = t.values
        attrs = [
            ("sock_dom", _hash_x(dom)),
            ("sock_type", _hash_x(ty)),
            ("lport", _hash_x(lport)),
            ("laddr", _addr_ex(at, laddr)),
            ("faddr", _addr_ex(at, raddr)),
            ("fport", _hash_x(rport)),
        ]
        return "<socket " + self._attrs(attrs) + "/>"

    def _x_upriv(self, t: Token) -> str:
        status, name = t.values
        s = "successful use of priv" if status else "failed use of priv"
        return "<upriv " + self._attrs([("status", s), ("name", _nonul(name))]) + "/>"

    def _x_priv(self, t: Token) -> str:
        attrs = [("type", _nonul(t.values[0])), ("priv", _nonul(t.values[1]))]
        return "<priv " + self._attrs(attrs) + "/>"

    def _x_unknown(self, t: Token) -> str:
        return ""


def json_text(s: str) -> object:
    """A decoded BSM string as JSON: itself when its bytes are valid UTF-8, else
    ``{"base64": <the exact bytes, RFC 4648>}`` (lossless; docs/praudit.md).

    Strings come from the decoder with surrogateescape, so bytes that are not
    UTF-8 are lone surrogates, which strict JSON readers refuse.
    """
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return {"base64": base64.b64encode(s.encode("utf-8", "surrogateescape")).decode("ascii")}
    return s


def _json_value(v: object) -> object:
    if isinstance(v, str):
        return json_text(v)
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if v is None or isinstance(v, int | float):
        return v
    return json_text(str(v))


_dumps = json.JSONEncoder(separators=(",", ":")).encode


class JsonFormatter:
    """``lxbsm-praudit --json``: one JSON object per record, on one line.

    The text of a token is kept by its values (a session's subject, common
    paths and attributes are encoded once); the header's fields are written
    directly.  Valid JSON for every input: see :func:`json_text`.
    """

    def __init__(self, events: EventTable | None = None) -> None:
        self.events = events
        self._cache: dict[tuple[object, tuple[object, ...]], str] = {}
        self._event_cache: dict[int, str] = {}
        self._source_cache: dict[str, str] = {}
        self._return_cache: dict[int, str] = {}
        # Headers without an address have only numbers: one %-format each.
        self._int_tpl: dict[object, str] = {}
        for spec in TOKEN_TABLE:
            if spec.name in ("header32", "header64"):
                fields = ",".join(f'"{f}":%d' for f in spec.fields)
                self._int_tpl[spec] = f'{{"token":"{spec.name}",{fields}}}'

    def token(self, t: Token) -> str:
        d: dict[str, object] = {"token": t.spec.name}
        for k, v in zip(t.spec.fields, t.values, strict=True):
            d[k] = _json_value(v)
        if t.spec is UNKNOWN:
            d["token_id"] = int(t.values[0])
        return _dumps(d)

    def _event(self, ev: int) -> str:
        s = self._event_cache.get(ev)
        if s is None:
            e = self.events.get(ev) if self.events is not None else None
            s = (
                f',"event_name":{_dumps(json_text(e.name))}'
                f',"event_description":{_dumps(json_text(e.description))}'
                if e is not None
                else ""
            )
            self._event_cache[ev] = s
        return s

    def _return(self, status: int) -> str:
        s = self._return_cache.get(status)
        if s is None:
            s = ',"success":' + ("true" if status == 0 else "false")
            err = bsm_to_errno(status)
            if status and err:
                s += f',"errno":{err},"error":{_dumps(os.strerror(err))}'
            self._return_cache[status] = s
        return s

    def record(self, rec: Record) -> str:
        cache = self._cache
        parts: list[str] = []
        append = parts.append
        ret: Token | None = None
        for t in rec.tokens:
            spec = t.spec
            name = spec.name
            if name in _UNCACHED:
                tpl = self._int_tpl.get(spec)
                append(tpl % t.values if tpl is not None else self.token(t))
                continue
            if ret is None and (name == "return32" or name == "return64"):
                ret = t
            key = (spec, t.values)
            try:
                s = cache.get(key)
            except TypeError:  # a list among the values: not hashable
                append(self.token(t))
                continue
            if s is None:
                if len(cache) >= _TEXT_CACHE_SIZE:
                    cache.clear()
                s = cache[key] = self.token(t)
            append(s)
        h = rec.tokens[0]
        hv = h.values
        index = h.spec.index
        ev = int(hv[index["event"]])
        src = self._source_cache.get(rec.source)
        if src is None:
            src = self._source_cache[rec.source] = _dumps(json_text(rec.source))
        tail = self._event(ev)
        if ret is not None:
            tail += self._return(int(ret.values[0]))
        return (
            f'{{"offset":{rec.offset},"size":{hv[index["size"]]},"version":{hv[index["version"]]}'
            f',"event":{ev},"modifier":{hv[index["modifier"]]},"time":{hv[index["sec"]]}'
            f',"msec":{hv[index["msec"]]},"tokens":[{",".join(parts)}],"source":{src}{tail}}}'
        )


_JSON: dict[int, tuple[EventTable | None, JsonFormatter]] = {}


def record_json(rec: Record, events: EventTable | None = None) -> str:
    """One JSON object for a record (``lxbsm-praudit --json``; see :class:`JsonFormatter`)."""
    kept = _JSON.get(id(events))
    if kept is None or kept[0] is not events:
        if len(_JSON) > 16:
            _JSON.clear()
        kept = _JSON[id(events)] = (events, JsonFormatter(events))
    return kept[1].record(rec)
