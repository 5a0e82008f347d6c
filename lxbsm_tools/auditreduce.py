"""lxbsm-auditreduce: select and merge BSM audit records (OpenBSM options).

Usage: ``lxbsm-auditreduce [-A] [-a YYYYMMDD[HH[MM[SS]]]] [-b ...] [-d YYYYMMDD]
[-c flags] [-m event ...] [-e euid] [-f egid] [-g rgid] [-r ruid] [-u auid]
[-j pid] [-o file=...|msgqid=...|pid=...|semid=...|shmid=...|sock=...] [-v]
[-z zone] [--skip-bad] [file ...]``

Records of all the input trails (standard input when none is given) are
merged in time order and those selected are written, byte for byte, to
standard output as a binary trail, so ``lxbsm-auditreduce -u alice trails/* |
lxbsm-praudit -l`` works.  A record is selected when every given option
matches it, as in OpenBSM:

* ``-a``/``-b``: header time at/after, at/before the local date-time;
  ``-d``: within that local day; ``-A`` selects all times (cancels a/b/d).
* ``-c flags``: the event's class (from audit_event) is in the flag mask;
  ``+class`` only matches successful records and ``-class`` failed ones
  (success from the return token; OpenBSM ignores the prefix here).
* ``-m``: event number or ``AUE_`` name; may repeat (any of them matches).
* ``-e -f -g -r -u``: euid, egid, rgid, ruid, auid of the subject token
  (names or numbers); ``-j``: the subject's pid.  A record without a subject
  token does not match these.
* ``-o file=path[,path]``: a path or file token starting with one of the
  paths (``~path`` excludes); ``pid=``: a process token's pid;
  ``msgqid=``/``semid=``/``shmid=``: an IPC token; ``sock=``: a socket token
  whose address or port equals the value.
* ``-z zone``: a zonename token equal to ``zone``.
* ``-v``: invert the selection.

Malformed input is reported (file, offset, token) and the exit status is 1;
with ``--skip-bad`` reading resumes at the next header.
"""

from __future__ import annotations

import bisect
import calendar
import getopt
import grp
import math
import pwd
import re
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from . import cfgread, cli
from .bsm import (
    BSMDecodeError,
    EventTable,
    Record,
    TrailReader,
    load_class_table,
    load_event_table,
    parse_flags,
)
from .bsm.errors import _NeedMore
from .bsm.record import _decode_file_token, _decode_record, _file_token_len
from .bsm.tokens import HEADER_IDS

PROG = "lxbsm-auditreduce"
USAGE = (
    f"usage: {PROG} [-A] [-a date] [-b date] [-c flags] [-d date] [-e euid] [-f egid]\n"
    "       [-g rgid] [-j pid] [-m event] [-o file=|msgqid=|pid=|semid=|shmid=|sock=]\n"
    "       [-r ruid] [-u auid] [-v] [-z zone] [--skip-bad] [file ...]"
)

_IPC_KIND = {1: "msgqid", 2: "semid", 3: "shmid"}
_NO_SUBJECT_CHECKS = (None,) * 6


class UsageError(Exception):
    pass


_DATE_FIELDS = (
    ("year", 0, 4, 1, 9999),
    ("month", 4, 6, 1, 12),
    ("day", 6, 8, 1, 31),
    ("hour", 8, 10, 0, 23),
    ("minute", 10, 12, 0, 59),
    ("second", 12, 14, 0, 59),
)


def _parse_time(s: str) -> float:
    """YYYYMMDD[HH[MM[SS]]] in local time -> epoch seconds."""
    if not cfgread.is_decimal(s) or len(s) not in (8, 10, 12, 14):
        raise UsageError(f"bad date {s!r} (want YYYYMMDD[HH[MM[SS]]], e.g. 20240102 or 2024010215)")
    values = []
    for name, a, b, lo, hi in _DATE_FIELDS[: len(s) // 2 - 1]:
        v = int(s[a:b])
        if not lo <= v <= hi:
            raise UsageError(f"bad date {s!r}: {name} {s[a:b]} is not {lo:02d}-{hi:02d}")
        values.append(v)
    values += [0] * (6 - len(values))
    days = calendar.monthrange(values[0], values[1])[1]
    if values[2] > days:
        raise UsageError(f"bad date {s!r}: {calendar.month_name[values[1]]} has {days} days")
    try:
        return time.mktime((*values, 0, 0, -1))  # type: ignore[arg-type]
    except (OverflowError, ValueError) as e:
        raise UsageError(f"bad date {s!r}: out of this system's range ({e})") from None


def _uid(s: str) -> int:
    if cfgread.is_decimal(s):
        return _id(s, "user")
    try:
        return pwd.getpwnam(s).pw_uid
    except (KeyError, ValueError):
        raise UsageError(f"unknown user {s!r}") from None


def _gid(s: str) -> int:
    if cfgread.is_decimal(s):
        return _id(s, "group")
    try:
        return grp.getgrnam(s).gr_gid
    except (KeyError, ValueError):
        raise UsageError(f"unknown group {s!r}") from None


def _id(s: str, what: str) -> int:
    try:
        return cfgread.id_number(s, f"a numeric {what}")
    except ValueError as e:
        raise UsageError(str(e)) from None


@dataclass
class Selection:
    """The selection options; :meth:`match` applies them to a record."""

    after: float | None = None
    before: float | None = None
    all_times: bool = False
    class_masks: tuple[int, int] | None = None
    events: set[int] = field(default_factory=set)
    euid: int | None = None
    egid: int | None = None
    rgid: int | None = None
    ruid: int | None = None
    auid: int | None = None
    subj_pid: int | None = None
    files: list[str] = field(default_factory=list)  # -o file= patterns, ~ to exclude
    _file_res: list[tuple[re.Pattern[str], bool]] | None = None
    obj_pid: int | None = None
    ipc: dict[str, int] = field(default_factory=dict)
    sock: str | None = None
    zone: str | None = None
    invert: bool = False
    event_table: EventTable | None = None

    def _subject_needed(self) -> bool:
        checks = (self.auid, self.euid, self.egid, self.ruid, self.rgid, self.subj_pid)
        return checks != _NO_SUBJECT_CHECKS

    def _objects_needed(self) -> bool:
        return bool(
            self.files
            or self.obj_pid is not None
            or self.ipc
            or self.sock is not None
            or self.zone is not None
        )

    def _subject_ok(self, rec: Record) -> bool:
        checks = (self.auid, self.euid, self.egid, self.ruid, self.rgid, self.subj_pid)
        if checks == _NO_SUBJECT_CHECKS:
            return True
        s = rec.subject
        if s is None:
            return False
        v = s.values
        # auid, euid, egid, ruid, rgid, pid
        for want, got in zip(checks, (v[0], v[1], v[2], v[3], v[4], v[5]), strict=True):
            if want is not None and want != got:
                return False
        return True

    def _time_ok(self, rec: Record) -> bool:
        if self.all_times or (self.after is None and self.before is None):
            return True
        sec = rec.sort_key[0]
        if self.after is not None and sec < self.after:
            return False
        return not (self.before is not None and sec > self.before)

    def _class_ok(self, rec: Record) -> bool:
        if self.class_masks is None:
            return True
        table = self.event_table
        mask = table.mask(rec.event) if table is not None else None
        if mask is None:
            return False
        success, failure = self.class_masks
        ok = rec.success
        if ok is None:
            ok = not (rec.modifier & 0x8000)  # PAD_FAILURE
        return bool(mask & (success if ok else failure))

    def _objects_ok(self, rec: Record) -> bool:
        if self.files:
            paths = [t.values[-1] for t in rec.tokens if t.spec.name in ("path", "file")]
            if not paths or not all(self._file_match(p) for p in paths):
                return False
        if self.obj_pid is not None and not any(t.values[5] == self.obj_pid for t in rec.processes):
            return False
        if self.ipc:
            found = False
            for t in rec.all("ipc"):
                kind = _IPC_KIND.get(t.values[0])
                if kind in self.ipc and self.ipc[kind] == t.values[1]:
                    found = True
            if not found:
                return False
        if self.sock is not None and not any(
            self._sock_match(t.as_dict())
            for t in rec.all("sock_inet32", "sock_inet128", "sock_unix", "socket_ex")
        ):
            return False
        if self.zone is not None:
            z = rec.first("zonename")
            if z is None or z.text != self.zone:
                return False
        return True

    def _file_match(self, path: str) -> bool:
        """OpenBSM's select_filepath: the first entry whose (unanchored) regular
        expression matches the path decides: selected, or not with ``~``; a
        path no entry matches is not selected."""
        if self._file_res is None:
            self._file_res = file_patterns(self.files)
        for rx, negate in self._file_res:
            if rx.search(path):
                return not negate
        return False

    def _sock_match(self, d: dict[str, object]) -> bool:
        want = self.sock
        for k in ("address", "laddr", "raddr", "path"):
            if d.get(k) == want:
                return True
        return any(str(d.get(k)) == want for k in ("port", "lport", "rport"))

    def match(self, rec: Record) -> bool:
        ok = (
            (not self.events or rec.event in self.events)
            and self._time_ok(rec)
            and self._class_ok(rec)
            and self._subject_ok(rec)
            and self._objects_ok(rec)
        )
        return ok != self.invert


def parse_args(argv: list[str]) -> tuple[Selection, list[str], bool]:
    try:
        opts, files = getopt.getopt(argv, "Aa:b:c:d:e:f:g:j:m:o:r:u:vz:", ["skip-bad", "help"])
    except getopt.GetoptError as e:
        raise UsageError(str(e)) from None
    sel = Selection()
    skip_bad = False
    need_events = False
    for k, v in opts:
        if k == "--help":
            raise UsageError("")
        if k == "--skip-bad":
            skip_bad = True
        elif k == "-A":
            sel.all_times = True
        elif k in ("-a", "-b"):
            if (k == "-a" and sel.after is not None) or (k == "-b" and sel.before is not None):
                raise UsageError(f"{k} given twice, or together with -d")
            t = _parse_time(v)
            if k == "-a":
                sel.after = t
            else:
                sel.before = t
        elif k == "-d":
            if sel.after is not None or sel.before is not None:
                raise UsageError("-d is exclusive with -a and -b")
            if len(v) != 8:
                raise UsageError(f"bad date {v!r} (want YYYYMMDD)")
            sel.after = _parse_time(v)
            sel.before = _parse_time(v + "235959")
        elif k == "-c":
            try:
                sel.class_masks = parse_flags(v, load_class_table())
            except (ValueError, OSError) as e:
                raise UsageError(f"bad class flags {v!r}: {e}") from None
            need_events = True
        elif k == "-m":
            sel.events.add(_event_number(v))
        elif k == "-e":
            sel.euid = _uid(v)
        elif k == "-f":
            sel.egid = _gid(v)
        elif k == "-g":
            sel.rgid = _gid(v)
        elif k == "-r":
            sel.ruid = _uid(v)
        elif k == "-u":
            sel.auid = _uid(v)
        elif k == "-j":
            sel.subj_pid = _int(v, "-j", 0xFFFFFFFF)
        elif k == "-o":
            _parse_object(sel, v)
        elif k == "-v":
            sel.invert = True
        elif k == "-z":
            sel.zone = v
    if need_events:
        sel.event_table = load_event_table()
    return sel, files, skip_bad


def file_patterns(entries: list[str]) -> list[tuple[re.Pattern[str], bool]]:
    """The -o file= entries compiled, in order, with their ``~``; UsageError for a bad one."""
    out = []
    for e in entries:
        neg = e.startswith("~")
        try:
            out.append((re.compile(e[1:] if neg else e), neg))
        except re.error as err:
            raise UsageError(f"-o file={e}: not a regular expression: {err}") from None
    return out


def split_file_entries(value: str) -> list[str]:
    """-o file=a,b: entries split at commas; ``\\,`` is a comma inside one (as OpenBSM)."""
    return [e.replace("\\,", ",") for e in re.split(r"(?<!\\),", value)]


def _int(v: str, opt: str, maximum: int = 0xFFFFFFFF) -> int:
    try:
        n = int(v, 0)
    except ValueError:
        raise UsageError(f"{opt} needs a number, not {v!r}") from None
    if not 0 <= n <= maximum:
        raise UsageError(f"{opt} {v}: out of range (0-{maximum})")
    return n


_EVENTS: EventTable | None = None


def _event_number(v: str) -> int:
    global _EVENTS
    try:
        n = int(v, 0)
    except ValueError:
        pass
    else:
        if not 0 <= n <= 0xFFFF:
            raise UsageError(f"-m {v}: event numbers are 0-65535 (16 bits in the header)")
        return n
    if _EVENTS is None:
        try:
            _EVENTS = load_event_table()
        except OSError as e:
            raise UsageError(f"-m {v}: {e}") from None
    try:
        return _EVENTS.lookup(v)
    except KeyError:
        raise UsageError(f"unknown event {v!r}") from None


def _parse_object(sel: Selection, v: str) -> None:
    kind, sep, val = v.partition("=")
    if not sep or not val:
        raise UsageError(f"-o wants type=value, not {v!r}")
    if kind == "file":
        sel.files.extend(split_file_entries(val))
        file_patterns(sel.files)  # a bad expression is a usage error now, not later
    elif kind == "pid":
        sel.obj_pid = _int(val, "-o pid=")
    elif kind in ("msgqid", "semid", "shmid"):
        sel.ipc[kind] = _int(val, f"-o {kind}=")
    elif kind == "sock":
        sel.sock = val
    else:
        raise UsageError(f"unknown object type {kind!r} for -o")


class OutputError(Exception):
    """The output refused a write (a full disk, EIO; a closed pipe is BrokenPipeError)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _open_input(name: str, err: IO[str]) -> IO[bytes] | None:
    """The opened input, or None after saying why it cannot be read."""
    if name == "-":
        return cli.binary_stdin(PROG)
    try:
        f = open(name, "rb")  # closed by _records
    except OSError as e:
        print(f"{PROG}: {name}: cannot open: {e.strerror}", file=err)
        return None
    return f


# -- reading: whole records, selected, in chunks ---------------------------------------
#
# A source yields chunks ``(data, keys, starts, ends)``: the selected records
# of a stretch of one input are ``data[starts[i]:ends[i]]`` with the sort key
# ``keys[i]`` (``sec << 64 | msec`` of the header, non-decreasing within a
# well-ordered trail).  When the selection needs only the header (time,
# event, class without +/-, -v, or none: a plain merge), records are not
# decoded: the header fields are read with one struct unpack, the trailer is
# checked, and the next record is found by the byte count; a record that
# does not pass these checks (no trailer, a corrupt count...) goes through
# the full decoder, which reports it exactly.  Otherwise each record is
# decoded and matched by :meth:`Selection.match`.

CHUNK = 1 << 20
_H32 = struct.Struct(">IBHHII")  # after the id: size, version, event, modifier, sec, msec
_H64 = struct.Struct(">IBHHQQ")
_HEX = struct.Struct(">IBHHI")  # ..._ex: size, version, event, modifier, address type
_TRAILER = struct.Struct(">BHI")
_RESYNC = re.compile(rb"[\x14\x15\x74\x79]")
_FILE_TOKEN = 0x11

Chunk = tuple[bytes, list[int], list[int], list[int]]


_FIXED_LEN = {0x13: 7, 0x27: 6, 0x72: 10, 0x3E: 29, 0x73: 33, 0x2F: 5, 0x2C: 3, 0x22: 6}
_TEXT_LEN_AT = {0x23: 1, 0x28: 1, 0x60: 1, 0x2D: 6, 0x71: 10}  # where the u16 length is
_SUBJECT_IDS = frozenset({0x24, 0x7A, 0x75, 0x7C})
_IDS7 = struct.Struct(">7I")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_UNSURE = ()  # _subject_ids: a token the walk does not know: decode the record


def _subject_ids(data: bytes, p: int, end: int) -> tuple[int, ...] | None:
    """auid, euid, egid, ruid, rgid, pid, sid of the record's first subject token
    (any flavour), walking the tokens by their lengths only; None without one,
    ``_UNSURE`` when a token is not one of the usual ones (the caller decodes)."""
    fixed = _FIXED_LEN
    text_at = _TEXT_LEN_AT
    while p < end:
        t = data[p]
        if t in _SUBJECT_IDS:
            if p + 29 > end:
                return _UNSURE
            ids: tuple[int, ...] = _IDS7.unpack_from(data, p + 1)
            return ids
        n = fixed.get(t)
        if n is None:
            at = text_at.get(t)
            if at is not None:
                n = at + 2 + _U16.unpack_from(data, p + at)[0]
            elif t == 0x3C or t == 0x3D:  # exec_args, exec_env
                if p + 5 > end:
                    return _UNSURE
                q = p + 5
                for _ in range(_U32.unpack_from(data, p + 1)[0]):
                    q = data.find(b"\0", q, end) + 1
                    if q == 0:
                        return _UNSURE
                p = q
                continue
            elif t == 0x3B:  # newgroups
                n = 3 + 4 * _U16.unpack_from(data, p + 1)[0]
            else:
                return _UNSURE
        p += n
    return None if p == end else _UNSURE


@dataclass
class HeaderFilter:
    """A selection decided from the header and, when asked, the subject's ids:
    events (-m and -c), times, -u -e -f -g -r -j, -v."""

    events: frozenset[int] | None
    lo: int | None  # smallest key selected
    hi: int | None  # first key not selected
    invert: bool
    subject: tuple[tuple[int, int], ...] = ()  # (index in _subject_ids, wanted value)


def header_filter(sel: Selection) -> HeaderFilter | None:
    """The fast form of ``sel``, or None when the records must be decoded."""
    if sel._objects_needed():
        return None
    events: set[int] | None = set(sel.events) if sel.events else None
    if sel.class_masks is not None:
        success, failure = sel.class_masks
        if success != failure or sel.event_table is None:
            return None  # +class/-class: success is in the return token
        by_class = {n for n, e in sel.event_table.by_number.items() if e.mask & success}
        events = by_class if events is None else events & by_class
    lo = hi = None
    if not sel.all_times:
        if sel.after is not None:
            lo = math.ceil(sel.after) << 64
        if sel.before is not None:
            hi = (math.floor(sel.before) + 1) << 64
    wanted = (sel.auid, sel.euid, sel.egid, sel.ruid, sel.rgid, sel.subj_pid)
    subject = tuple((i, w) for i, w in enumerate(wanted) if w is not None)
    return HeaderFilter(None if events is None else frozenset(events), lo, hi, sel.invert, subject)


def _key(rec: Record) -> int:
    sec, msec = rec.sort_key
    return sec << 64 | msec


class _Source:
    """One input, read in chunks; failures go to ``on_error`` / ``read_error``."""

    def __init__(
        self,
        stream: IO[bytes],
        source: str,
        skip_bad: bool,
        on_error: Callable[[BSMDecodeError], None],
        read_error: Callable[[str], None],
    ) -> None:
        self.stream = stream
        self.source = source
        self.skip_bad = skip_bad
        self.on_error = on_error
        self.read_error = read_error

    def close(self) -> None:
        if self.stream is not getattr(sys.stdin, "buffer", None):
            self.stream.close()

    def chunks(self, sel: Selection) -> Iterator[Chunk]:
        try:
            hf = header_filter(sel)
            if hf is not None:
                yield from self._header_chunks(hf, sel)
            else:
                yield from self._decoded_chunks(sel)
        except BrokenPipeError:
            raise
        except OSError as e:
            self.read_error(f"{self.source}: read error: {e.strerror or e}")
        finally:
            self.close()

    def _read(self) -> bytes:
        read1 = getattr(self.stream, "read1", None)
        data: bytes = read1(CHUNK) if read1 is not None else self.stream.read(CHUNK)
        return data

    def _decoded_chunks(self, sel: Selection) -> Iterator[Chunk]:
        match = sel.match
        parts: list[bytes] = []
        keys: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        size = 0
        reader = TrailReader(
            self.stream, self.source, skip_bad=self.skip_bad, on_error=self.on_error
        )
        try:
            for rec in reader:
                if not isinstance(rec, Record) or not match(rec):
                    continue
                raw = rec.raw
                keys.append(_key(rec))
                starts.append(size)
                size += len(raw)
                ends.append(size)
                parts.append(raw)
                if size >= CHUNK:
                    yield b"".join(parts), keys, starts, ends
                    parts, keys, starts, ends, size = [], [], [], [], 0
        except BSMDecodeError as e:
            self.on_error(e)
        if parts:
            yield b"".join(parts), keys, starts, ends

    def _header_chunks(self, hf: HeaderFilter, sel: Selection) -> Iterator[Chunk]:
        source = self.source
        data = b""
        base = 0  # offset of data[0] in the input
        eof = False
        resync = False
        h32 = _H32.unpack_from
        h64 = _H64.unpack_from
        trailer = _TRAILER.unpack_from
        events = hf.events
        lo, hi, invert = hf.lo, hf.hi, hf.invert
        subject = hf.subject
        hlen = 0
        while not eof:
            more = self._read()
            if more:
                data = data + more if data else more
            else:
                eof = True
            n = len(data)
            pos = 0
            keys: list[int] = []
            starts: list[int] = []
            ends: list[int] = []
            while pos < n:
                if resync:
                    m = _RESYNC.search(data, pos)
                    if m is None:
                        pos = n
                        break
                    pos = m.start()
                tid = data[pos]
                end = -1
                if tid == 0x14 and pos + 19 <= n:
                    size, _v, ev, _mod, sec, msec = h32(data, pos + 1)
                    end = pos + size
                    key = sec << 64 | msec
                    hlen = 18
                elif tid == 0x74 and pos + 27 <= n:
                    size, _v, ev, _mod, sec, msec = h64(data, pos + 1)
                    end = pos + size
                    key = sec << 64 | msec
                    hlen = 26
                elif (tid == 0x15 or tid == 0x79) and pos + 14 <= n:
                    size, _v, ev, _mod, atype = _HEX.unpack_from(data, pos + 1)
                    t = pos + 14 + atype
                    if atype in (4, 16) and t + (8 if tid == 0x15 else 16) <= n:
                        if tid == 0x15:
                            sec, msec = struct.unpack_from(">II", data, t)
                        else:
                            sec, msec = struct.unpack_from(">QQ", data, t)
                        end = pos + size
                        key = sec << 64 | msec
                        hlen = 14 + atype + (8 if tid == 0x15 else 16)
                if (
                    pos + 25 <= end <= n
                    and not resync
                    and trailer(data, end - 7) == (0x13, 0xB105, end - pos)
                ):
                    # The fast path: header read, trailer checked.
                    ok = (
                        (events is None or ev in events)
                        and (lo is None or key >= lo)
                        and (hi is None or key < hi)
                    )
                    ids: tuple[int, ...] | None = None
                    if ok and subject:
                        ids = _subject_ids(data, pos + hlen, end - 7)
                        if ids is None:
                            ok = False
                        elif ids is not _UNSURE:
                            for i, w in subject:
                                if ids[i] != w:
                                    ok = False
                                    break
                    if ids is not _UNSURE:
                        if ok != invert:
                            keys.append(key)
                            starts.append(pos)
                            ends.append(end)
                        pos = end
                        continue
                    # A token the walk does not know: decode the record below.
                # Anything else: the full decoder decides (and says what is wrong).
                try:
                    if tid == _FILE_TOKEN and not resync:
                        _decode_file_token(data, pos, n, eof, base, source)
                        pos += _file_token_len(data, pos)
                        continue
                    if tid not in HEADER_IDS:
                        raise BSMDecodeError(
                            source,
                            base + pos,
                            None,
                            f"expected a header or file token, found byte 0x{tid:02x}",
                        )
                    rec = _decode_record(data, pos, n, eof, base, source)
                except _NeedMore:
                    break
                except BSMDecodeError as e:
                    if resync:
                        pos += 1
                        continue
                    self.on_error(e)
                    if not self.skip_bad:
                        if keys:
                            yield data, keys, starts, ends
                        return
                    resync = True
                    pos += 1
                    continue
                resync = False
                key = _key(rec)
                if sel.match(rec):
                    keys.append(key)
                    starts.append(pos)
                    ends.append(pos + len(rec.raw))
                pos += len(rec.raw)
            if keys:
                yield data, keys, starts, ends
            data = data[pos:]
            base += pos
        if data and not resync:
            # eof inside a record: the decoder names it.
            try:
                _decode_record(data, 0, len(data), True, base, source)
            except BSMDecodeError as e:
                self.on_error(e)
            except _NeedMore:
                pass


def _runs(data: bytes, starts: list[int], ends: list[int], i: int, j: int) -> list[bytes]:
    """``data`` of records i..j-1, contiguous records as one slice."""
    out = []
    s, e = starts[i], ends[i]
    for k in range(i + 1, j):
        if starts[k] != e:
            out.append(data[s:e])
            s = starts[k]
        e = ends[k]
    out.append(data[s:e])
    return out


def _merge(sources: list[Iterator[Chunk]], emit: Callable[[list[bytes]], None]) -> None:
    """Merge the sources' chunks by key, ties in source order, stable within one.

    Each step takes the source whose next record is the earliest and writes all
    its records up to the next record of any other source at once (bisect), so
    trails that follow each other in time merge at the speed of one.
    """
    live: list[tuple[Iterator[Chunk], Chunk, int]] = []  # (iterator, chunk, next index)
    for it in sources:
        for chunk in it:
            if chunk[1]:
                live.append((it, chunk, 0))
                break
    while live:
        if len(live) == 1:
            it, (data, keys, starts, ends), i = live[0]
            emit(_runs(data, starts, ends, i, len(keys)))
            for data, keys, starts, ends in it:
                if keys:
                    emit(_runs(data, starts, ends, 0, len(keys)))
            return
        # The earliest head; ties go to the first source (live keeps source order).
        best = 0
        best_key = live[0][1][1][live[0][2]]
        for n in range(1, len(live)):
            k = live[n][1][1][live[n][2]]
            if k < best_key:
                best, best_key = n, k
        # Up to the earliest head among the others: strictly before it for a
        # later source, up to and including it for an earlier one.
        it, (data, keys, starts, ends), i = live[best]
        j = len(keys)
        for n in range(len(live)):
            if n == best:
                continue
            k = live[n][1][1][live[n][2]]
            cut = (
                bisect.bisect_right(keys, k, i, j)
                if n > best
                else bisect.bisect_left(keys, k, i, j)
            )
            j = min(j, cut)
        j = max(j, i + 1)
        emit(_runs(data, starts, ends, i, j))
        if j < len(keys):
            live[best] = (it, (data, keys, starts, ends), j)
            continue
        for chunk in it:
            if chunk[1]:
                live[best] = (it, chunk, 0)
                break
        else:
            del live[best]


def reduce(
    files: list[str],
    sel: Selection,
    out: IO[bytes],
    *,
    skip_bad: bool = False,
    err: IO[str] | None = None,
) -> int:
    """Merge ``files`` in time order and write the selected records to ``out``."""
    err = err if err is not None else sys.stderr
    status = 0

    def on_error(e: BSMDecodeError) -> None:
        nonlocal status
        status = 1
        print(f"{PROG}: {e}" + (" (skipped)" if skip_bad else ""), file=err)

    def read_error(msg: str) -> None:
        nonlocal status
        status = 1
        print(f"{PROG}: {msg}", file=err)

    pending: list[bytes] = []
    pending_size = 0

    def write(data: bytes) -> None:
        try:
            out.write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e) from None

    def emit(parts: list[bytes]) -> None:
        nonlocal pending_size
        pending.extend(parts)
        pending_size += sum(map(len, parts))
        if pending_size >= CHUNK:
            write(b"".join(pending))
            pending.clear()
            pending_size = 0

    opened: list[_Source] = []
    for f in files or ["-"]:
        stream = _open_input(f, err)
        if stream is None:
            status = 1
        else:
            src = "<stdin>" if f == "-" else f
            opened.append(_Source(stream, src, skip_bad, on_error, read_error))
    if not opened:
        return status
    try:
        _merge([s.chunks(sel) for s in opened], emit)
    finally:
        for s in opened:
            s.close()
    write(b"".join(pending))
    try:
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(e) from None
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        sel, files, skip_bad = parse_args(args)
    except UsageError as e:
        if str(e):
            cli.err(PROG, str(e))
        print(USAGE, file=cli.stderr())
        return 1
    stdout = cli.binary_stdout(PROG)
    if stdout is None:
        return 1
    if stdout.isatty():
        cli.err(PROG, "refusing to write a binary trail to a terminal (pipe it to lxbsm-praudit)")
        return 1
    try:
        return reduce(files, sel, stdout, skip_bad=skip_bad, err=cli.stderr())
    except BrokenPipeError:
        cli.silence_stdout()
        return 0
    except OutputError as e:
        return cli.write_failed(PROG, e.error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
