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

import getopt
import grp
import heapq
import os
import pwd
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from .bsm import (
    BSMDecodeError,
    EventTable,
    Record,
    TrailReader,
    load_class_table,
    load_event_table,
    parse_flags,
)

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


def _parse_time(s: str) -> float:
    """YYYYMMDD[HH[MM[SS]]] in local time -> epoch seconds."""
    if not s.isdigit() or len(s) not in (8, 10, 12, 14):
        raise UsageError(f"bad date {s!r} (want YYYYMMDD[HH[MM[SS]]])")
    fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}[len(s)]
    try:
        return time.mktime(time.strptime(s, fmt))
    except ValueError as e:
        raise UsageError(f"bad date {s!r}: {e}") from None


def _uid(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        try:
            return pwd.getpwnam(s).pw_uid
        except KeyError:
            raise UsageError(f"unknown user {s!r}") from None


def _gid(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        try:
            return grp.getgrnam(s).gr_gid
        except KeyError:
            raise UsageError(f"unknown group {s!r}") from None


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
    files: list[str] = field(default_factory=list)
    obj_pid: int | None = None
    ipc: dict[str, int] = field(default_factory=dict)
    sock: str | None = None
    zone: str | None = None
    invert: bool = False
    event_table: EventTable | None = None

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
            if want is not None and want & 0xFFFFFFFF != got:
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
            if not paths or not any(self._file_match(p) for p in paths):
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
        included = [p for p in self.files if not p.startswith("~")]
        excluded = [p[1:] for p in self.files if p.startswith("~")]
        if any(path.startswith(p) for p in excluded):
            return False
        return not included or any(path.startswith(p) for p in included)

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
            sel.subj_pid = _int(v, "-j")
        elif k == "-o":
            _parse_object(sel, v)
        elif k == "-v":
            sel.invert = True
        elif k == "-z":
            sel.zone = v
    if need_events:
        sel.event_table = load_event_table()
    return sel, files, skip_bad


def _int(v: str, opt: str) -> int:
    try:
        return int(v, 0)
    except ValueError:
        raise UsageError(f"{opt} needs a number, not {v!r}") from None


_EVENTS: EventTable | None = None


def _event_number(v: str) -> int:
    global _EVENTS
    try:
        return int(v, 0)
    except ValueError:
        pass
    if _EVENTS is None:
        try:
            _EVENTS = load_event_table()
        except OSError as e:
            raise UsageError(f"cannot read audit_event: {e}") from None
    try:
        return _EVENTS.lookup(v)
    except KeyError:
        raise UsageError(f"unknown event {v!r}") from None


def _parse_object(sel: Selection, v: str) -> None:
    kind, sep, val = v.partition("=")
    if not sep or not val:
        raise UsageError(f"-o wants type=value, not {v!r}")
    if kind == "file":
        sel.files.extend(p for p in val.split(",") if p)
    elif kind == "pid":
        sel.obj_pid = _int(val, "-o pid=")
    elif kind in ("msgqid", "semid", "shmid"):
        sel.ipc[kind] = _int(val, f"-o {kind}=")
    elif kind == "sock":
        sel.sock = val
    else:
        raise UsageError(f"unknown object type {kind!r} for -o")


def _records(
    name: str, index: int, skip_bad: bool, on_error: Callable[[BSMDecodeError], None]
) -> Iterator[tuple[tuple[int, int], int, int, Record]]:
    """``(time, index, seq, record)``: ordered by time, then file, then position."""
    stream: IO[bytes]
    if name == "-":
        stream = sys.stdin.buffer
        source = "<stdin>"
    else:
        stream = open(name, "rb")
        source = name
    seq = 0
    try:
        for rec in TrailReader(stream, source, skip_bad=skip_bad, on_error=on_error):
            if not isinstance(rec, Record):
                continue
            seq += 1
            yield rec.sort_key, index, seq, rec
    except BSMDecodeError as e:
        on_error(e)
    finally:
        if name != "-":
            stream.close()


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

    for f in files:
        if f != "-" and not os.access(f, os.R_OK):
            print(f"{PROG}: {f}: cannot open", file=err)
            status = 1
    readable = [f for f in files or ["-"] if f == "-" or os.access(f, os.R_OK)]
    # Each input is already in time order; heapq.merge keeps the merge lazy
    # and ties stable (file order, then record order): (time, index, seq) is
    # unique, so the tuples never compare the records themselves.
    iters = [_records(f, i, skip_bad, on_error) for i, f in enumerate(readable)]
    merged = iters[0] if len(iters) == 1 else heapq.merge(*iters)
    buf: list[bytes] = []
    size = 0
    match = sel.match
    for _key, _i, _seq, rec in merged:
        if match(rec):
            buf.append(rec.raw)
            size += len(rec.raw)
            if size >= 1 << 16:
                out.write(b"".join(buf))
                buf.clear()
                size = 0
    out.write(b"".join(buf))
    out.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        sel, files, skip_bad = parse_args(args)
    except UsageError as e:
        if str(e):
            print(f"{PROG}: {e}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 1
    if sys.stdout.isatty():
        print(
            f"{PROG}: refusing to write a binary trail to a terminal (pipe it to lxbsm-praudit)",
            file=sys.stderr,
        )
        return 1
    try:
        return reduce(files, sel, sys.stdout.buffer, skip_bad=skip_bad)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
