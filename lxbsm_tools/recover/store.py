"""Where the journal of protected files lives, and its baselines.

::

    DIR/objects/ab/cdef...          file contents, named by their SHA-256
    DIR/baselines/TIME_NS.base      one baseline: a BASE entry per regular file
    DIR/journal/FIRSTSEQ.j          journal files: the entries, in order
    DIR/lock                        compaction against the daemon's appends

A baseline copies every regular file under the protected trees into
objects/ (a content already there costs nothing: later baselines store only
what changed) and lists them, with their file ids, modes and owners.  Every
file is written to a temporary name, flushed and renamed, and its directory
flushed, so a crash leaves either the whole file or none (a journal file
may end in a cut frame, which reading reports and skips).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import history, journal
from .history import FileState, Tree, replay
from .journal import Damage, Entry, Kind

SEGMENT = 64 << 20  # bytes of a journal file before the next one is begun
AGAIN = "another compaction ran at the same time; nothing was changed, run it again"
STREAM_OVER = 1 << 20  # a file this large is copied in chunks, not read whole


class StoreError(Exception):
    """A journal directory that cannot be used (says which file and why)."""


def file_id(st_dev: int, st_ino: int) -> int:
    """A file's id: its device (as stat gives it) and inode, in 64 bits
    (unique while inode numbers fit 32 bits, as ext4's do); the kernel
    encodes a change's file the same way."""
    return ((st_dev << 32) ^ st_ino) & 0xFFFFFFFFFFFFFFFF


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """@path holds @data, whole, on disk; or, after a crash, what it held."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        journal.write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class Baseline:
    path: Path
    time_ns: int


@dataclass(frozen=True)
class Compacted:
    """What a compaction made: its baseline, and the LOST entries it folded
    (changes not captured: the baseline may not hold what those files held)."""

    baseline: Baseline
    lost: list[Entry]


@dataclass(frozen=True)
class BaselineReport:
    baseline: Baseline
    files: int
    added: int  # bytes the baseline added to the directory
    skipped: list[tuple[bytes, str]]  # files and directories it could not read, and why


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.baselines_dir = root / "baselines"
        self.journal_dir = root / "journal"

    def create(self) -> None:
        for d in (self.root, self.objects, self.baselines_dir, self.journal_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        self.make_lock_file()

    def make_lock_file(self) -> None:
        """DIR/lock, for locked(), if it is not there (0644; never through a
        symbolic link)."""
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(self.root / "lock", flags, 0o644))

    @contextlib.contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        """The journal files held still: appends (the daemon's) take the lock
        shared, a compaction's look at the files and its rewrite of them
        exclusive, so that no entry appended meanwhile is dropped with a
        file it rewrites.  A record lock on DIR/lock: shared needs only read
        access, so a daemon running as another user than the compaction's
        can take it (a missing lock file is made, 0644)."""
        p = self.root / "lock"
        # Never through a symbolic link: root would make or lock its target.
        flags = os.O_RDWR if exclusive else os.O_RDONLY
        flags |= os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(p, flags, 0o644)
        except OSError as e:
            raise StoreError(f"{p}: cannot open the lock file: {e.strerror}") from None
        try:
            # An open file description's lock (not a process's): a thread of
            # the daemon's process is kept out as well as another process.
            kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("@hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))
            yield
        finally:
            os.close(fd)  # and the lock with it

    def _check(self) -> None:
        for d in (self.objects, self.baselines_dir, self.journal_dir):
            if not d.is_dir():
                raise StoreError(
                    f"{self.root}: not a journal directory ({d.name}/ is missing); "
                    "protection makes it when it starts"
                )

    # Contents.
    def _object(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.objects / h[:2] / h[2:]

    def put(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        p = self._object(digest)
        if not p.exists():
            p.parent.mkdir(mode=0o700, exist_ok=True)
            write_atomic(p, data)
        return digest

    def get(self, digest: bytes) -> bytes:
        p = self._object(digest)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{p}: a baseline's content is missing from the store") from None
        if hashlib.sha256(data).digest() != digest:
            raise StoreError(f"{p}: content does not match its name (damaged)")
        return data

    def put_file(self, fd: int) -> tuple[bytes, int, int]:
        """The content of the open regular file @fd, stored: its SHA-256, its
        size and the bytes this added to the store.  A large file is copied
        in chunks while it is hashed, never held whole in memory."""
        first = os.read(fd, STREAM_OVER)
        if len(first) < STREAM_OVER:
            digest = hashlib.sha256(first).digest()
            new = not self._object(digest).exists()
            self.put(first)
            return digest, len(first), len(first) if new else 0
        tmp = self.objects / f".put.{os.getpid()}.{threading.get_ident()}.tmp"
        out = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        h = hashlib.sha256()
        size = 0
        try:
            chunk = first
            while chunk:
                h.update(chunk)
                journal.write_all(out, chunk)
                size += len(chunk)
                chunk = os.read(fd, 1 << 20)
            digest = h.digest()
            p = self._object(digest)
            if not p.exists():
                os.fsync(out)
        finally:
            os.close(out)
        if p.exists():
            tmp.unlink()
            return digest, size, 0
        p.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(tmp, p)
        _fsync_dir(p.parent)
        return digest, size, size

    # Baselines.
    def take_baseline(self, trees: Iterable[bytes], time_ns: int) -> Baseline:
        """Copy every regular file under @trees (absolute; symbolic links not
        followed)."""
        return self.baseline(trees, time_ns).baseline

    def baseline(self, trees: Iterable[bytes], time_ns: int) -> BaselineReport:
        """take_baseline(), saying how many files it holds, the bytes it
        added and the files and directories it could not read.  Each file's
        content is stored as it is read: memory holds one file at a time."""
        self._check()
        trees = [os.path.normpath(t) for t in trees]
        entries: list[Entry] = []
        skipped: list[tuple[bytes, str]] = []
        added = 0
        for top in trees:
            for path, _st in _regular_files(top, skipped):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
                except FileNotFoundError:
                    continue  # gone since the walk: the journal has it
                except OSError as e:
                    if e.errno != errno.ELOOP:  # ELOOP: a link now: the journal has it
                        skipped.append((path, e.strerror or str(e)))
                    continue
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        continue  # replaced by something else since the walk
                    digest, size, more = self.put_file(fd)
                except OSError as e:
                    skipped.append((path, e.strerror or str(e)))
                    continue
                finally:
                    os.close(fd)
                added += more
                entries.append(
                    Entry(
                        seq=len(entries) + 1,
                        time_ns=time_ns,
                        kind=Kind.BASE,
                        fid=file_id(fst.st_dev, fst.st_ino),
                        path=path,
                        size=size,
                        data=digest,
                        mode=fst.st_mode,
                        uid=fst.st_uid,
                        gid=fst.st_gid,
                    )
                )
        known = set(self.trees())
        write_atomic(self.root / "trees", b"\0".join(sorted(known | set(trees))))
        p = self.baselines_dir / f"{time_ns:020d}.base"
        data = b"".join(journal.encode(e) for e in entries)
        write_atomic(p, data)
        return BaselineReport(Baseline(p, time_ns), len(entries), added + len(data), skipped)

    def trees(self) -> list[bytes]:
        """The trees protected so far (restores write nowhere else)."""
        try:
            raw = (self.root / "trees").read_bytes()
        except FileNotFoundError:
            return []
        return [t for t in raw.split(b"\0") if t]

    def baselines(self) -> list[Baseline]:
        self._check()
        out = []
        for p in sorted(self.baselines_dir.glob("*.base")):
            try:
                out.append(Baseline(p, int(p.stem)))
            except ValueError:
                continue
        return out

    def baseline_for(self, time_ns: int | None) -> Baseline | None:
        """The newest baseline taken at or before @time_ns (None: the newest)."""
        found = [b for b in self.baselines() if time_ns is None or b.time_ns <= time_ns]
        return found[-1] if found else None

    def load_baseline(self, b: Baseline | None, damages: list[Damage]) -> Tree:
        t = Tree()
        if b is None:
            return t
        for e in journal.read(b.path, damages):
            if e.kind != Kind.BASE:
                damages.append(Damage(b.path, 0, 0, f"entry {e.seq} is not a baseline file"))
                continue
            t.paths[e.path] = e.fid
            t.files[e.fid] = FileState(self.get(e.data), e.mode, e.uid, e.gid)
        return t

    # The journal.
    def entries(self, damages: list[Damage]) -> list[Entry]:
        """Every entry of every journal file, in sequence order."""
        self._check()
        seen: dict[int, Entry] = {}
        for p in sorted(self.journal_dir.glob("*.j")):
            for e in journal.read(p, damages):
                # A compaction cut short leaves an entry in two files.
                seen.setdefault(e.seq, e)
        return [seen[s] for s in sorted(seen)]

    def last_seq(self) -> int:
        """The highest sequence number the journal files hold (0: none yet):
        a new entry takes a higher one, so that the journal's order is kept
        across restarts.  Only the last file is read (a file is named by its
        first sequence number; one that holds no entry that checks counts as
        that number)."""
        self._check()
        files = sorted(self.journal_dir.glob("*.j"))
        if not files:
            return 0
        last = files[-1]
        seqs = [e.seq for e in journal.read(last, [])]
        named = int(last.stem) if last.stem.isdigit() else 0
        return max([named, *seqs])

    def disk_bytes(self) -> int:
        """What the directory's files hold, in bytes."""
        total = 0
        for d, _dirs, names in os.walk(self.root):
            for n in names:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(d, n)).st_size
        return total

    # Untrusted sessions, users and terminals, which compaction keeps.
    def marks(self) -> list[tuple[str, str]]:
        """What the administrator marked untrusted: ("session", "66"), ..."""
        try:
            text = (self.root / "untrusted").read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            what, _, value = line.partition(" ")
            if value:
                out.append((what, value))
        return out

    def mark(self, what: str, value: str) -> None:
        self._check()
        marks = self.marks()
        if (what, value) not in marks:
            marks.append((what, value))
        write_atomic(self.root / "untrusted", "".join(f"{w} {v}\n" for w, v in marks).encode())

    def compact(self, before_ns: int, untrusted: Callable[[Entry], bool]) -> Compacted:
        """Fold every entry made at or before @before_ns into a new baseline
        and drop them and the older baselines: restores to a moment before
        it are given up.  Refused (StoreError) if any of those entries is
        @untrusted.  Each step leaves a usable directory if cut short: the
        new baseline is whole before the older ones go, they are gone before
        any entry goes, the remaining entries of a file are whole in their
        new file before the old one goes, and an entry left in two files is
        read once.

        The daemon may file entries meanwhile.  The files are read as they
        stood at one moment (their sizes, under the lock), the tree replayed
        without the lock; then, holding it, what was appended since is read
        and replayed too, and the files rewritten: the daemon waits for that
        part only, and nothing it filed is lost."""
        self._check()
        with self.locked(exclusive=True):
            sizes = {p: p.stat().st_size for p in sorted(self.journal_dir.glob("*.j"))}
        damages: list[Damage] = []
        try:
            by_file = {p: list(journal.read(p, damages, 0, n)) for p, n in sizes.items()}
        except FileNotFoundError as e:
            raise StoreError(f"{e.filename}: removed while compacting: {AGAIN}") from None
        self._refuse(by_file, damages, before_ns, untrusted)
        old = self.baseline_for(before_ns)
        base = self.load_baseline(old, damages)
        if damages:
            raise StoreError(f"{damages[0]}: the baseline is damaged; not compacting")
        start = old.time_ns if old else 0

        def folded(es: Iterable[Entry]) -> list[Entry]:
            return sorted((e for e in es if start <= e.time_ns <= before_ns), key=lambda e: e.seq)

        t = replay(base, folded(self._unique(by_file)))
        with self.locked(exclusive=True):
            for p, n in sizes.items():
                if not p.exists() or p.stat().st_size < n:
                    raise StoreError(f"{p}: rewritten while compacting: {AGAIN}")
            late: dict[Path, list[Entry]] = {}
            for p in sorted(self.journal_dir.glob("*.j")):
                got = list(journal.read(p, damages, sizes.get(p, 0)))
                if got:
                    late[p] = got
            self._refuse(late, damages, before_ns, untrusted)
            seen = {e.seq for es in by_file.values() for e in es}
            # Entries of the moment filed late (a backlog in the ring): on top,
            # as journal order puts them.
            t = replay(t, folded(e for e in self._unique(late) if e.seq not in seen))
            for p, es in late.items():
                by_file.setdefault(p, []).extend(es)
            baseline = self._write_baseline(t, before_ns)
            # The older baselines go before any entry does: one left beside a
            # journal that lost the entries after it would restore its moments
            # wrong, where without it they are refused.
            for b in self.baselines():
                if b.time_ns < before_ns:
                    b.path.unlink()
            _fsync_dir(self.baselines_dir)
            for p in sorted(by_file):
                es = by_file[p]
                rest = [e for e in es if e.time_ns > before_ns]
                if len(rest) == len(es):
                    continue  # nothing of it folded: left as it is
                if rest:
                    keep = self.journal_dir / f"{rest[0].seq:020d}.j"
                    if keep != p and keep in by_file:
                        # The name is taken (by a compaction cut short, or by
                        # this loop): one file of both, each entry once.
                        both = self._unique({keep: by_file[keep], p: rest})
                        rest = [e for e in both if e.time_ns > before_ns]
                    by_file[keep] = rest
                    write_atomic(keep, b"".join(journal.encode(e) for e in rest))
                    if keep == p:
                        continue
                p.unlink()
            _fsync_dir(self.journal_dir)
        return Compacted(baseline, history.lost_after(self._unique(by_file), before_ns))

    @staticmethod
    def _unique(by_file: dict[Path, list[Entry]]) -> list[Entry]:
        """Entries in sequence order, each once (a compaction cut short
        leaves an entry in two files)."""
        seen: dict[int, Entry] = {}
        for _p, es in sorted(by_file.items()):
            for e in es:
                seen.setdefault(e.seq, e)
        return [seen[s] for s in sorted(seen)]

    @staticmethod
    def _refuse(
        by_file: dict[Path, list[Entry]],
        damages: list[Damage],
        before_ns: int,
        untrusted: Callable[[Entry], bool],
    ) -> None:
        if damages:
            raise StoreError(f"{damages[0]}: repair or move the damaged file before compacting")
        bad = [e for es in by_file.values() for e in es if e.time_ns <= before_ns and untrusted(e)]
        if bad:
            raise StoreError(
                f"entry {bad[0].seq} (session {bad[0].asid}, audit id {bad[0].auid}, "
                f"terminal {bad[0].terminal or '-'}) is before that time and marked untrusted: "
                "compaction would make its changes permanent"
            )

    def _write_baseline(self, t: Tree, time_ns: int) -> Baseline:
        entries = [
            Entry(
                seq=i + 1,
                time_ns=time_ns,
                kind=Kind.BASE,
                fid=fid,
                path=path,
                size=len(t.files[fid].data),
                data=self.put(t.files[fid].data),
                mode=t.files[fid].mode,
                uid=t.files[fid].uid,
                gid=t.files[fid].gid,
            )
            for i, (path, fid) in enumerate(sorted(t.paths.items()))
        ]
        p = self.baselines_dir / f"{time_ns:020d}.base"
        write_atomic(p, b"".join(journal.encode(e) for e in entries))
        return Baseline(p, time_ns)

    def append(self, entries: list[Entry]) -> int:
        """Add @entries to the last journal file, or to a new one once the
        last holds SEGMENT bytes (a reader holds one file in memory) or
        cannot be written by this user (one a compaction run as another user
        made); the bytes added."""
        if not entries:
            self._check()
            return 0
        return self.append_frames(b"".join(journal.encode(e) for e in entries), entries[0].seq)

    def append_frames(self, data: bytes, first_seq: int) -> int:
        """append() of entries already encoded (journal.encode), the first
        of them entry @first_seq; the bytes added."""
        self._check()
        if not data:
            return 0
        with self.locked(exclusive=False):
            files = sorted(self.journal_dir.glob("*.j"))
            if files and files[-1].stat().st_size < SEGMENT:
                try:
                    journal.append_bytes(files[-1], data)
                    return len(data)
                except PermissionError:
                    pass
            journal.append_bytes(self.journal_dir / f"{first_seq:020d}.j", data)
            _fsync_dir(self.journal_dir)
        return len(data)


def _regular_files(
    top: bytes, skipped: list[tuple[bytes, str]] | None = None
) -> Iterator[tuple[bytes, os.stat_result]]:
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(top)
        if stat.S_ISREG(st.st_mode):
            yield top, st
            return

    def unreadable(e: OSError) -> None:
        if skipped is not None and not isinstance(e, FileNotFoundError):
            skipped.append((os.fsencode(e.filename or top), e.strerror or str(e)))

    for d, dirs, names in os.walk(top, onerror=unreadable):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p, st
