"""lxbsm-recover: what changed in the protected files, and putting them back.

Usage::

    lxbsm-recover [--journal DIR] log [PATH ...] [--since T] [--until T]
                  [--auid U] [--session S] [--terminal ADDR] [--json]
    lxbsm-recover [--journal DIR] restore (--at T | --without-session S |
                  --without-auid U | --without-terminal ADDR) [PATH ...]
                  [--to DIR] [--dry-run] [--json]
    lxbsm-recover [--journal DIR] mark (--session S | --auid U | --terminal ADDR)
    lxbsm-recover [--journal DIR] compact --before T
    lxbsm-recover [--journal DIR] undo [RESTORE]

T is auditreduce's ``YYYYMMDD[HH[MM[SS]]]`` in local time or ISO 8601.
``restore --at`` gives every protected file as it was at T; ``--without-*``
gives them as if the named sessions, users or terminals had never run,
keeping every other change (docs/recovery.md).  In place, every file a
restore replaces or removes is first kept aside under the journal
directory's ``aside/``; ``--to DIR`` writes a copy instead and touches
nothing else.  Paths are restricted to the protected trees, and no symbolic
link is followed on the way to a file written.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import pwd
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..auditreduce import UsageError, _parse_time
from ..cli import err
from . import history
from .history import FileState, Tree
from .journal import AUDIT_UNSET, Damage, Entry, write_all
from .store import Store, StoreError, write_atomic

PROG = "lxbsm-recover"
DEFAULT_JOURNAL = Path("/var/lib/lxbsm/protect")


def show_path(p: bytes) -> str:
    """A path as text: UTF-8 as it is, any other byte, control characters
    and backslashes as octal escapes (``\\012`` a newline)."""
    out = []
    for ch in p.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\{o - 0xDC00:03o}")
        elif o < 0x20 or o == 0x7F or ch == "\\":
            out.append(f"\\{o:03o}")
        else:
            out.append(ch)
    return "".join(out)


def parse_when(s: str) -> int:
    """A moment as ns since the epoch: YYYYMMDD[HH[MM[SS]]] (local) or ISO 8601."""
    if s.isdigit():
        return int(_parse_time(s)) * 1_000_000_000
    try:
        d = datetime.datetime.fromisoformat(s)
    except ValueError:
        raise UsageError(
            f"bad time {s!r} (want YYYYMMDD[HH[MM[SS]]] in local time, or ISO 8601 "
            "such as 2026-12-04T17:30:00 or 2026-12-04T17:30:00+09:00)"
        ) from None
    return int(d.timestamp() * 1_000_000) * 1000


def _user(auid: int) -> str:
    if auid == AUDIT_UNSET:
        return "-"
    try:
        return f"{pwd.getpwuid(auid).pw_name} ({auid})"
    except KeyError:
        return str(auid)


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).isoformat(timespec="microseconds")


def _under(tops: list[bytes], p: bytes) -> bool:
    """@p is one of @tops or below one."""
    return any(p == t or p.startswith(t.rstrip(b"/") + b"/") for t in tops)


def _protected(trees: list[bytes], p: bytes) -> bool:
    parts = p.split(b"/")
    return p.startswith(b"/") and b".." not in parts and b"." not in parts and _under(trees, p)


def _selected(paths: list[bytes], p: bytes) -> bool:
    return not paths or _under(paths, p)


def _load(
    store: Store, until_ns: int | None, oldest: bool
) -> tuple[Tree, list[Entry], list[Damage]]:
    """The baseline to start from (the newest before @until_ns, or the
    oldest: undoing a session needs the state before it) and the entries
    made since."""
    damages: list[Damage] = []
    if oldest:
        bs = store.baselines()
        b = bs[0] if bs else None
    else:
        b = store.baseline_for(until_ns)
    base = store.load_baseline(b, damages)
    entries = store.entries(damages)
    if b is not None:
        entries = [e for e in entries if e.time_ns >= b.time_ns]
    for d in damages:
        err(PROG, str(d))
    return base, entries, damages


def cmd_log(store: Store, a: argparse.Namespace) -> int:
    since = parse_when(a.since) if a.since else None
    until = parse_when(a.until) if a.until else None
    damages: list[Damage] = []
    entries = store.entries(damages)
    for d in damages:
        err(PROG, str(d))
    paths = [os.fsencode(p) for p in a.paths]
    asked = {w: getattr(a, w) for w in ("auid", "session", "terminal")}
    whose = [matcher(w, str(v)) for w, v in asked.items() if v is not None]  # auid 0 counts
    rows = []
    for e in entries:
        if (since is not None and e.time_ns < since) or (until is not None and e.time_ns > until):
            continue
        if not all(m(e) for m in whose):
            continue
        if paths and not (_selected(paths, e.path) or (e.path2 and _selected(paths, e.path2))):
            continue
        rows.append(e)
    _warn_lost(history.lost_after(rows))
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "seq": e.seq,
                        "time": _when(e.time_ns),
                        "time_ns": e.time_ns,
                        "auid": e.auid,
                        "user": _user(e.auid),
                        "session": e.asid,
                        "terminal": e.terminal,
                        "event": e.event,
                        "change": e.kind.name.lower(),
                        "path": show_path(e.path),
                        "path2": show_path(e.path2) if e.path2 else None,
                        "start": e.start,
                        "end": e.end,
                        "size": e.size,
                    }
                    for e in rows
                ]
            )
        )
        return 1 if damages else 0
    head = ("time", "who", "session", "terminal", "event", "change", "path", "range", "size")
    table = [
        (
            _when(e.time_ns),
            _user(e.auid),
            "-" if e.asid == AUDIT_UNSET else str(e.asid),
            e.terminal or "-",
            e.event or "-",
            e.kind.name.lower(),
            show_path(e.path) + (" -> " + show_path(e.path2) if e.path2 else ""),
            f"[{e.start}, {e.end})" if e.end > e.start else "-",
            str(e.size),
        )
        for e in rows
    ]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"changes to protected files ({len(rows)})")
        for h in head:
            t.add_column(h, overflow="fold")
        for r in table:
            t.add_row(*r)
        Console().print(t)
    else:
        for r in table:
            print("\t".join(r))
    return 1 if damages else 0


def _warn_lost(lost: list[Entry], selected: Callable[[bytes], bool] = lambda p: True) -> int:
    """Say, for each file, that a change to it was not captured; how many."""
    n = 0
    for e in lost:
        if not selected(e.path):
            continue
        n += 1
        err(
            PROG,
            f"{show_path(e.path)}: a change at {_when(e.time_ns)} to bytes [{e.start}, {e.end}) "
            f"was not captured ({e.event or 'no reason given'}): the file cannot be restored "
            "exactly to any moment after it, until the next baseline",
        )
    return n


def matcher(what: str, value: str) -> Callable[[Entry], bool]:
    """The entries of a session, an audit id or a terminal's address."""
    if what == "terminal":
        return lambda e: e.terminal.split(" ")[0] == value
    n = int(value)
    if what == "session":
        return lambda e: e.asid == n
    return lambda e: e.auid == n


def _trusted_filter(a: argparse.Namespace) -> Callable[[Entry], bool] | None:
    for what in ("session", "auid", "terminal"):
        v = getattr(a, f"without_{what}")
        if v is not None:
            return matcher(what, str(v))
    return None


def cmd_mark(store: Store, a: argparse.Namespace) -> int:
    for what in ("session", "auid", "terminal"):
        v = getattr(a, what)
        if v is not None:
            store.mark(what, str(v))
            print(f"{what} {v} marked untrusted: compaction keeps its changes undoable")
    return 0


def cmd_compact(store: Store, a: argparse.Namespace) -> int:
    before = parse_when(a.before)
    marks = [matcher(w, v) for w, v in store.marks()]
    done = store.compact(before, lambda e: any(m(e) for m in marks))
    for e in done.lost:
        err(
            PROG,
            f"{show_path(e.path)}: a change at {_when(e.time_ns)} was not captured "
            f"({e.event or 'no reason given'}): the new baseline holds what the journal knew "
            "of this file, which may not be what it held",
        )
    print(f"entries up to {_when(before)} folded into {done.baseline.path}")
    return 0


def _read_current(p: bytes) -> FileState | None:
    """What the regular file @p holds now, with its mode and owner."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileState(f.read(), st.st_mode, st.st_uid, st.st_gid)


def _open_dir(root_fd: int, parts: Sequence[bytes]) -> int:
    """The directory @parts below @root_fd, made where missing, no symbolic
    link followed (an ELOOP or ENOTDIR OSError if one is in the way)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _dir_of(root: bytes, p: bytes) -> tuple[int, bytes]:
    """The directory of @p (absolute) below @root, opened, and @p's name."""
    parts = [x for x in p.split(b"/") if x]
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _open_dir(rfd, parts[:-1]), parts[-1]
    except OSError as e:
        where = show_path(root.rstrip(b"/") + p)
        raise RestoreError(
            f"cannot write {where}: a directory on its way is a symbolic link or not a "
            f"directory ({e.strerror}); nothing was written there: look at what replaced it"
        ) from None
    finally:
        os.close(rfd)


class RestoreError(Exception):
    pass


def _write_below(root: bytes, p: bytes, f: FileState, own: bool) -> None:
    """@p (absolute) below @root holds @f: written to a temporary name and
    renamed over whatever was there (never through a symbolic link)."""
    dfd, name = _dir_of(root, p)
    try:
        tmp = f".lxbsm-recover.{os.getpid()}.{time.time_ns()}".encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            write_all(fd, f.data)
            if own:
                os.fchown(fd, f.uid, f.gid)
            os.fchmod(fd, stat.S_IMODE(f.mode))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _unlink_below(p: bytes) -> None:
    dfd, name = _dir_of(b"/", p)
    try:
        os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def cmd_restore(store: Store, a: argparse.Namespace) -> int:
    trees = store.trees()
    untrusted = _trusted_filter(a)
    at = parse_when(a.at) if a.at else None
    first = store.baselines()
    if at is not None and first and at < first[0].time_ns:
        raise UsageError(
            f"the journal starts at {_when(first[0].time_ns)} (protection began or was "
            "compacted then): it cannot restore an earlier moment"
        )
    base, entries, damages = _load(store, at, oldest=untrusted is not None)
    if untrusted is None:
        want = history.replay(base, entries, until_ns=at).view()
        conflicts: list[history.Conflict] = []
    else:
        want, conflicts = history.revert(base, entries, untrusted)
    paths = [os.fsencode(os.path.abspath(p)) for p in a.paths]
    outside = [p for p in paths if not _protected(trees, p)]
    if outside:
        raise UsageError(f"{show_path(outside[0])} is not under a protected tree")
    known = set(want) | {p for e in entries for p in (e.path, e.path2) if p}
    targets = sorted(p for p in known if _selected(paths, p) and _protected(trees, p))
    tset = set(targets)
    lost = _warn_lost(history.lost_after(entries, at), lambda p: p in tset)
    changes: list[Change] = []
    for p in targets:
        cur = _read_current(p) if a.to is None else None
        new = want.get(p)
        if a.to is None and (
            (cur is None and new is None) or (new is not None and cur is not None and cur == new)
        ):
            continue
        if a.to is not None and new is None:
            continue
        changes.append((p, cur, new))
    for c in conflicts:
        err(
            PROG,
            f"conflict in {show_path(c.path)}: bytes [{c.undone_range[0]}, {c.undone_range[1]}) "
            f"written by session(s) {sorted({e.asid for e in c.undone})} were changed by "
            f"session(s) {sorted({e.asid for e in c.kept})} (now [{c.kept_range[0]}, "
            f"{c.kept_range[1]})): {c.what}; the trusted version is kept",
        )
    if a.dry_run:
        return _show_diff(changes, a.json) or (1 if damages or conflicts or lost else 0)
    if a.to is not None:
        root = os.fsencode(a.to)
        os.makedirs(root, exist_ok=True)
        for p, _, new in changes:
            assert new is not None
            _write_below(root, p, new, own=os.geteuid() == 0)
    else:
        aside = _apply_in_place(store, changes)
        print(
            f"{len(changes)} file(s) restored; what they held is kept in {aside} "
            f"(lxbsm-recover undo puts it back)"
        )
    return 1 if damages or conflicts or lost else 0


Change = tuple[bytes, FileState | None, FileState | None]  # path, now, to be


def _apply_in_place(store: Store, changes: list[Change]) -> Path:
    """Make @changes, keeping what each file held (content, mode, owner)
    aside first, and the list of files made; the aside directory."""
    aside = store.root / "aside" / str(time.time_ns())
    aside.mkdir(parents=True, mode=0o700)
    root = os.geteuid() == 0
    made: list[bytes] = []
    for p, cur, _ in changes:
        if cur is not None:
            _write_below(os.fsencode(aside), p, cur, own=root)
        else:
            made.append(p)
    write_atomic(aside / "made", b"\0".join(made))
    for p, _, new in changes:
        if new is None:
            _unlink_below(p)
        else:
            _write_below(b"/", p, new, own=root)
    return aside


def cmd_undo(store: Store, a: argparse.Namespace) -> int:
    """Put back what a restore kept aside, and remove what it made; what
    the files hold now is kept aside in turn (an undo can be undone)."""
    asides = sorted(
        (d for d in (store.root / "aside").glob("*") if d.name.isdigit()),
        key=lambda d: int(d.name),
    )
    if a.aside is not None:
        asides = [d for d in asides if d.name == a.aside]
    if not asides:
        raise UsageError(
            f"no restore to undo in {store.root / 'aside'}"
            + (f" named {a.aside}" if a.aside else "")
        )
    aside = asides[-1]
    try:
        made = [p for p in (aside / "made").read_bytes().split(b"\0") if p]
    except FileNotFoundError:
        raise StoreError(f"{aside}: no 'made' list: not a restore's aside directory") from None
    trees = store.trees()
    changes: list[Change] = []
    top = os.fsencode(aside)
    for d, _, names in os.walk(top):
        for n in names:
            kept = os.path.join(d, n)
            p = kept[len(top) :]
            if d == top and n == b"made":
                continue
            if not _protected(trees, p):
                raise StoreError(f"{show_path(kept)}: not below a protected tree; not undoing")
            old = _read_current(kept)
            if old is not None:
                changes.append((p, _read_current(p), old))
    for p in made:
        if not _protected(trees, p):
            raise StoreError(f"{aside}/made names {show_path(p)}, not below a protected tree")
        changes.append((p, _read_current(p), None))
    again = _apply_in_place(store, sorted(changes, key=lambda c: c[0]))
    os.rename(aside, aside.with_name(aside.name + ".undone"))
    print(
        f"{len(changes)} file(s) put back as they were before restore {aside.name}; "
        f"what they held is kept in {again}"
    )
    return 0


def _show_diff(changes: list[Change], as_json: bool) -> int:
    out = sys.stdout.buffer
    rows: list[dict[str, Any]] = []
    for p, cur, new in changes:
        old_b = cur.data if cur is not None else b""
        new_b = new.data if new is not None else b""
        what = "restore" if cur is None else "remove" if new is None else "change"
        if as_json:
            rows.append({"path": show_path(p), "action": what, "size": len(new_b)})
            continue
        name = p
        if b"\0" in old_b[:8192] or b"\0" in new_b[:8192]:
            out.write(b"Binary file " + name + b" " + what.encode() + b"d\n")
            continue
        a = b"/dev/null" if cur is None else b"a" + name
        b = b"/dev/null" if new is None else b"b" + name
        for line in difflib.diff_bytes(
            difflib.unified_diff, old_b.splitlines(True), new_b.splitlines(True), a, b
        ):
            out.write(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n")
    if as_json:
        print(json.dumps(rows))
    out.flush()
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help="journal directory")
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("log", help="each change to the protected files")
    lg.add_argument("paths", nargs="*", metavar="PATH")
    lg.add_argument("--since")
    lg.add_argument("--until")
    lg.add_argument("--auid", type=int)
    lg.add_argument("--session", type=int)
    lg.add_argument("--terminal", metavar="ADDR")
    lg.add_argument("--json", action="store_true")
    rs = sub.add_parser("restore", help="put the protected files back")
    g = rs.add_mutually_exclusive_group(required=True)
    g.add_argument("--at", metavar="TIME")
    g.add_argument("--without-session", type=int, metavar="S")
    g.add_argument("--without-auid", type=int, metavar="U")
    g.add_argument("--without-terminal", metavar="ADDR")
    rs.add_argument("paths", nargs="*", metavar="PATH")
    rs.add_argument("--to", metavar="DIR")
    rs.add_argument("--dry-run", action="store_true")
    rs.add_argument("--json", action="store_true")
    mk = sub.add_parser("mark", help="mark a session, user or terminal untrusted")
    g = mk.add_mutually_exclusive_group(required=True)
    g.add_argument("--session", type=int, metavar="S")
    g.add_argument("--auid", type=int, metavar="U")
    g.add_argument("--terminal", metavar="ADDR")
    cp = sub.add_parser("compact", help="fold older entries into a new baseline")
    cp.add_argument("--before", required=True, metavar="TIME")
    ud = sub.add_parser("undo", help="undo the last in-place restore (or the one named)")
    ud.add_argument("aside", nargs="?", metavar="RESTORE", help="its directory's name in aside/")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = parser().parse_args(argv)
    store = Store(a.journal)
    try:
        if a.cmd == "log":
            return cmd_log(store, a)
        if a.cmd == "mark":
            return cmd_mark(store, a)
        if a.cmd == "compact":
            return cmd_compact(store, a)
        if a.cmd == "undo":
            return cmd_undo(store, a)
        return cmd_restore(store, a)
    except (UsageError, StoreError, RestoreError) as e:
        err(PROG, str(e))
        return 2
    except OSError as e:
        err(PROG, f"{os.fsdecode(e.filename) if e.filename else ''}: {e.strerror or e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
