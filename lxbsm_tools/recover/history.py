"""Protected files at any moment, and without what untrusted sessions did.

A :class:`Tree` is the state of the protected files: which path names which
file (a file id: hard links are one file) and what each file holds.
Replaying journal entries on the baseline gives the tree at any moment
(:func:`replay`).  :func:`revert` gives the tree as if some changes had
never been made, the way ``git revert`` does: each run of consecutive
untrusted changes is undone by a three-way merge of the state before the
run into the current state, with the state after the run as their base.  A
trusted edit made later is kept, even one that rewrote the whole file by
writing a new one and renaming it over the old (as editors and ``sed -i``
do): the intruder's bytes that edit copied are still taken out, because
the merge compares contents, not byte ranges or inodes.  Only where a
later trusted change altered the very lines the intruder wrote is there a
conflict; the trusted content is kept there and the conflict is reported.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import merge3

from .journal import Entry, Kind


@dataclass(frozen=True)
class FileState:
    data: bytes
    mode: int = 0o100644
    uid: int = 0
    gid: int = 0


@dataclass
class Tree:
    paths: dict[bytes, int] = field(default_factory=dict)  # path -> file id
    files: dict[int, FileState] = field(default_factory=dict)  # file id -> state

    def copy(self) -> Tree:
        return Tree(dict(self.paths), dict(self.files))

    def view(self) -> dict[bytes, FileState]:
        """Each path with what it holds."""
        return {p: self.files[f] for p, f in self.paths.items()}

    def _drop_if_unnamed(self, fid: int) -> None:
        if fid not in self.paths.values():
            self.files.pop(fid, None)

    def apply(self, e: Entry) -> None:
        """One change.  A change to a file the tree does not hold (its
        baseline missed it, or it came in from outside the protected tree)
        starts from an empty file.  A LOST entry changes nothing: what the
        change made is unknown (lost_after() names such files)."""
        if e.kind == Kind.LOST:
            return
        if e.kind == Kind.CREATE:
            old = self.paths.get(e.path)
            self.paths[e.path] = e.fid
            self.files[e.fid] = FileState(b"", e.mode, e.uid, e.gid)
            if old is not None and old != e.fid:
                self._drop_if_unnamed(old)
            return
        if e.kind == Kind.UNLINK:
            fid = self.paths.pop(e.path, None)
            if fid is not None:
                self._drop_if_unnamed(fid)
            return
        if e.kind == Kind.RENAME:
            fid = self.paths.pop(e.path, e.fid)
            if fid not in self.files:
                self.files[fid] = FileState(b"")
            old = self.paths.get(e.path2)
            self.paths[e.path2] = fid
            if old is not None and old != fid:
                self._drop_if_unnamed(old)
            return
        fid = self.paths.get(e.path, e.fid)
        if e.path not in self.paths:
            self.paths[e.path] = fid
        cur = self.files.get(fid, FileState(b""))
        if e.kind == Kind.LINK:
            self.files[fid] = cur
            old = self.paths.get(e.path2)
            self.paths[e.path2] = fid
            if old is not None and old != fid:
                self._drop_if_unnamed(old)
        elif e.kind == Kind.WRITE:
            buf = bytearray(cur.data)
            if len(buf) < e.start:
                buf.extend(bytes(e.start - len(buf)))
            buf[e.start : e.end] = e.data
            self.files[fid] = replace(cur, data=_resize(bytes(buf), e.size))
        elif e.kind == Kind.TRUNCATE:
            self.files[fid] = replace(cur, data=_resize(cur.data, e.size))
        elif e.kind == Kind.META:
            self.files[fid] = replace(cur, mode=e.mode, uid=e.uid, gid=e.gid)


def _resize(data: bytes, size: int) -> bytes:
    return data[:size] if len(data) >= size else data + bytes(size - len(data))


def lost_after(entries: Iterable[Entry], until_ns: int | None = None) -> list[Entry]:
    """The LOST entries among @entries made at or before @until_ns: changes
    that were not captured, after which the file cannot be restored exactly
    (until the next baseline)."""
    return [
        e for e in entries if e.kind == Kind.LOST and (until_ns is None or e.time_ns <= until_ns)
    ]


def replay(base: Tree, entries: Iterable[Entry], until_ns: int | None = None) -> Tree:
    """The tree after every entry (in journal order) made at or before @until_ns."""
    t = base.copy()
    for e in entries:
        if until_ns is not None and e.time_ns > until_ns:
            break
        t.apply(e)
    return t


@dataclass(frozen=True)
class Conflict:
    """A trusted change that altered lines an undone change wrote."""

    path: bytes
    undone: tuple[Entry, ...]  # the untrusted run's entries on this path
    kept: tuple[Entry, ...]  # the later trusted entries on this path
    undone_range: tuple[int, int]  # bytes of the undone run's result in conflict
    kept_range: tuple[int, int]  # the same place in the trusted (kept) content
    what: str


def _lines(b: bytes) -> list[bytes]:
    return b.splitlines(keepends=True)


def _span(lines: Sequence[bytes], i: int, j: int) -> tuple[int, int]:
    start = sum(len(x) for x in lines[:i])
    return start, start + sum(len(x) for x in lines[i:j])


def _merge_bytes(
    base: bytes, ours: bytes, theirs: bytes
) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Three-way merge of lines (diff3): ours' changes from base kept,
    theirs' applied; where both changed the same lines, ours is kept and the
    conflict's byte ranges (in base, in ours) are returned."""
    if ours == base:
        return theirs, []
    if theirs == base or ours == theirs:
        return ours, []
    bl, ol, tl = _lines(base), _lines(ours), _lines(theirs)
    out: list[bytes] = []
    conflicts: list[tuple[int, int, int, int]] = []
    for region in merge3.Merge3(bl, ol, tl).merge_regions():
        what = region[0]
        if what == "unchanged":
            out.extend(bl[region[1] : region[2]])
        elif what in ("a", "same"):
            out.extend(ol[region[1] : region[2]])
        elif what == "b":
            out.extend(tl[region[1] : region[2]])
        else:  # conflict: zstart, zend, astart, aend, bstart, bend
            zs, ze, as_, ae, bs, be = (int(x) for x in region[1:7])
            fine = _merge_region(bl[zs:ze], ol[as_:ae], tl[bs:be])
            if fine is not None:
                out.extend(fine)
                continue
            out.extend(ol[as_:ae])
            conflicts.append((*_span(bl, zs, ze), *_span(ol, as_, ae)))
    return b"".join(out), conflicts


_Edit = tuple[int, int, list[bytes]]  # base lines [i, j) become these


def _edits(base: list[bytes], other: list[bytes]) -> list[_Edit]:
    sm = difflib.SequenceMatcher(None, base, other, autojunk=False)
    return [(i1, i2, other[j1:j2]) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"]


def _merge_region(base: list[bytes], ours: list[bytes], theirs: list[bytes]) -> list[bytes] | None:
    """A region diff3 calls a conflict, merged line by line where the two
    sides changed different lines of base (diff3 also calls changes to
    adjacent lines a conflict: a trusted edit of the line before an
    intruder's appended one, say); None where they changed the same line,
    or inserted at the same place."""
    edits = sorted(
        [(i, j, r, 0) for i, j, r in _edits(base, ours)]
        + [(i, j, r, 1) for i, j, r in _edits(base, theirs)],
        key=lambda e: (e[0], e[1], e[3]),
    )
    for (i1, j1, _, s1), (i2, j2, _, s2) in itertools.pairwise(edits):
        if s1 == s2:
            continue
        if i2 < j1 or (i1 == j1 == i2) or (i2 == j2 == i1 and j1 > i1):
            return None
    out: list[bytes] = []
    at = 0
    for i, j, r, _ in edits:
        out.extend(base[at:i])
        out.extend(r)
        at = j
    out.extend(base[at:])
    return out


def _merge_meta(base: FileState, ours: FileState, theirs: FileState, data: bytes) -> FileState:
    def pick(name: str) -> int:
        b, o, t = getattr(base, name), getattr(ours, name), getattr(theirs, name)
        return int(t if o == b else o)

    return FileState(data, pick("mode"), pick("uid"), pick("gid"))


def _runs(entries: Sequence[Entry], untrusted: Callable[[Entry], bool]) -> list[tuple[int, int]]:
    """Maximal runs [i, j) of consecutive untrusted entries."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(entries):
        if not untrusted(entries[i]):
            i += 1
            continue
        j = i
        while j < len(entries) and untrusted(entries[j]):
            j += 1
        runs.append((i, j))
        i = j
    return runs


def _touched(entries: Sequence[Entry], before: Tree, after: Tree) -> set[bytes]:
    """Every path whose content, metadata or existence the entries may have
    changed: their own paths and every other name of the files they wrote."""
    paths: set[bytes] = set()
    fids: set[int] = set()
    for e in entries:
        paths.add(e.path)
        if e.path2:
            paths.add(e.path2)
        for t in (before, after):
            if e.path in t.paths:
                fids.add(t.paths[e.path])
    for t in (before, after):
        paths.update(p for p, f in t.paths.items() if f in fids)
    return paths


def revert(
    base: Tree, entries: Sequence[Entry], untrusted: Callable[[Entry], bool]
) -> tuple[dict[bytes, FileState], list[Conflict]]:
    """Every protected path as if the @untrusted entries had never been
    made, every other change kept; and the conflicts (see the module)."""
    runs = _runs(entries, untrusted)
    # One replay, the tree kept only where a run starts or ends.
    marks = {k for run in runs for k in run}
    states: dict[int, Tree] = {}
    t = base.copy()
    for k, e in enumerate(entries):
        if k in marks:
            states[k] = t.copy()
        t.apply(e)
    states[len(entries)] = t
    result = t.view()
    conflicts: list[Conflict] = []
    for i, j in reversed(runs):
        before, after = states[i], states[j]
        bv, av = before.view(), after.view()
        run = entries[i:j]
        for p in sorted(_touched(run, before, after)):
            b, a, o = bv.get(p), av.get(p), result.get(p)
            merged, found = _merge_path(a, o, b)
            if merged is None:
                result.pop(p, None)
            else:
                result[p] = merged
            if found:
                kept = tuple(e for e in entries[j:] if not untrusted(e) and p in (e.path, e.path2))
                undone = tuple(e for e in run if p in (e.path, e.path2))
                for what, zr, orng in found:
                    conflicts.append(Conflict(p, undone, kept, zr, orng, what))
    return result, sorted(conflicts, key=lambda c: (c.path, c.undone_range))


_Found = list[tuple[str, tuple[int, int], tuple[int, int]]]


def _merge_path(
    base: FileState | None, ours: FileState | None, theirs: FileState | None
) -> tuple[FileState | None, _Found]:
    """One path's three-way merge: base is after the undone run, theirs
    before it, ours the current result."""
    if ours == base:
        return theirs, []
    if theirs == base or ours == theirs:
        return ours, []
    if base is None:
        # The run deleted (or renamed away) the path and a trusted change made
        # it again: keep the trusted file.
        assert ours is not None
        size = len(ours.data)
        return ours, [("made again by a trusted change after it was removed", (0, 0), (0, size))]
    if ours is None:
        return None, []  # a trusted change removed it since: stays removed
    if theirs is None:
        # The run made the path and a trusted change altered it since: undo
        # the run's content and keep the trusted changes.
        data, found = _merge_bytes(base.data, ours.data, b"")
        if not data and not found:
            return None, []
        return replace(ours, data=data), _conflicts(found)
    data, found = _merge_bytes(base.data, ours.data, theirs.data)
    return _merge_meta(base, ours, theirs, data), _conflicts(found)


def _conflicts(found: list[tuple[int, int, int, int]]) -> _Found:
    return [
        ("a trusted change rewrote what the undone change wrote", (a, b), (c, d))
        for a, b, c, d in found
    ]
