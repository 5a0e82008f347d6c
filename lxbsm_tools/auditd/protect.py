"""Protected trees, the daemon's side (docs/recovery.md, "The daemon").

The module sends, for every change to a regular file below a protected
tree, journal records (AUE_LXBSM_JWRITE ... AUE_LXBSM_JLOST) through the
ring.  The daemon writes them to the trail like every record and, here,
files each as a journal entry (:class:`Filer`: one append and one fsync per
batch) in the journal directory, lxbsm-recover's :class:`Store`.

Opening the trees and taking baselines needs to read what the audit user
may not (``/etc/shadow``, ``/root``): that is done by a helper process
forked before the daemon drops its privileges (:func:`start_helper`),
which keeps CAP_DAC_READ_SEARCH and nothing else, runs as the audit user
under the daemon's seccomp filter (plus threads), and talks to the daemon
over a socket pair: it opens trees and hands the descriptors back
(SCM_RIGHTS), and takes baselines in a thread of its own, so that the
daemon goes on reading the ring while a large tree is read.
"""

from __future__ import annotations

import array
import errno
import json
import os
import queue
import re
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from lxbsm_tools import uapi
from lxbsm_tools.bsm import BSMDecodeError, Record, decode_records
from lxbsm_tools.bsm.tokens import HEADER_IDS, TRAILER_MAGIC, Token
from lxbsm_tools.recover import journal
from lxbsm_tools.recover.journal import AUDIT_UNSET, Entry, Kind
from lxbsm_tools.recover.store import Store, StoreError, file_id

from . import config as cfgmod

AUE_LXBSM_JWRITE = 33003
KIND_OF = {
    33003: Kind.WRITE,
    33004: Kind.TRUNCATE,
    33005: Kind.CREATE,
    33006: Kind.UNLINK,
    33007: Kind.RENAME,
    33008: Kind.LINK,
    33009: Kind.META,
    33010: Kind.LOST,
}
# Any journal event's number, as a header carries it: one pass over a batch
# (eight "in" tests took 17 times as long on a batch of lxbsm's own records,
# whose event numbers share the first byte).
_EVENT_BYTES = re.compile(b"|".join(re.escape(n.to_bytes(2, "big")) for n in sorted(KIND_OF)))
OVER_MAX = "not filed: protect-max reached"
MAX_MESSAGE = 1 << 20
SKIPPED_SHOWN = 20  # files a baseline could not read, named in its report
CAP_DAC_READ_SEARCH = 2
# Besides the daemon's allow-list, the helper starts a thread for baselines.
HELPER_SYSCALLS = ("clone", "clone3", "set_robust_list", "rseq", "sched_getaffinity")


class RecordError(ValueError):
    """A journal record that does not say what the interface says it must."""


def _terminal(subj: Token) -> str:
    """The subject's terminal as the journal writes it: "ADDRESS port N",
    "ADDRESS" without a port, "" for none."""
    addr = subj.address or ""
    port = subj.port
    if addr in ("", "0.0.0.0", "::") and port == 0:
        return ""
    return f"{addr} port {port}" if port else addr


def entry_of(rec: Record, seq: int) -> Entry:
    """The journal entry one journal record (docs/recovery.md) makes, as
    entry @seq; RecordError naming what is wrong if it is malformed."""
    kind = KIND_OF[rec.event]
    args = {t.num: t.value for t in rec.all("arg64", "arg32")}

    def arg(n: int, name: str) -> int:
        if n not in args:
            raise RecordError(f"no arg64 {n} ({name})")
        return int(args[n])

    size = arg(3, "size")
    start = end = 0
    if kind in (Kind.WRITE, Kind.LOST):
        start, end = arg(1, "start"), arg(2, "end")
        if end < start:
            raise RecordError(f"range [{start}, {end}) ends before it starts")
    paths = [t.text.encode("utf-8", "surrogateescape") for t in rec.all("path")]
    want = 2 if kind in (Kind.RENAME, Kind.LINK) else 1
    if len(paths) != want:
        raise RecordError(f"{len(paths)} path tokens where {kind.name} has {want}")
    attr = rec.first("attr32", "attr64")
    if attr is None:
        raise RecordError("no attr32 token")
    data = b""
    if kind == Kind.WRITE:
        op = rec.first("opaque")
        if op is None:
            raise RecordError("no opaque token (the data)")
        data = bytes(op.data)
        if len(data) != end - start:
            raise RecordError(f"opaque holds {len(data)} bytes for the range [{start}, {end})")
    text = rec.first("text")
    subj = rec.subject
    t = rec.time
    e = Entry(
        seq=seq,
        time_ns=t.sec * 1_000_000_000 + t.msec * 1_000_000,
        kind=kind,
        fid=file_id(attr.fsid, attr.nodeid),
        path=paths[0],
        path2=paths[1] if want == 2 else b"",
        start=start,
        end=end,
        size=size,
        data=data,
        # Mode as stat gives it (the baseline's, and what restore compares).
        mode=stat.S_IFREG | (attr.mode & 0o7777),
        uid=attr.uid,
        gid=attr.gid,
        auid=subj.auid if subj is not None else AUDIT_UNSET,
        asid=subj.sid if subj is not None else AUDIT_UNSET,
        terminal=_terminal(subj) if subj is not None else "",
        event=text.text if text is not None else "",
    )
    try:
        journal.encode(e)
    except (journal.JournalError, struct.error, UnicodeError) as err:
        raise RecordError(str(err)) from None
    return e


# -- the fast path: journal records as the module writes them ---------------
#
# Every journal record the module writes (kmod/protect.c, jrec_emit) is a
# header32, arg64 tokens, one or two paths, an attr32, for a JWRITE an opaque
# token (the data), a text, then subject32 or subject32_ex, return32, [seq]
# and the trailer.  parse_fast() reads that layout with struct alone and
# gives the entry's fields; anything else, or anything entry_of() would
# refuse, gives None, and the record takes the general decoder and
# entry_of(), which file it or say why not.  So the fast path never files
# what the general one would not, nor differently (tests/host/test_protect.py
# compares them on generated and damaged records).

_HEADER32 = struct.Struct(">BIBHHII")  # id, size, version, event, modifier, sec, msec
_ARG64 = struct.Struct(">BQH")  # num, value, text length
_ATTR32 = struct.Struct(">IIIIQI")  # mode, uid, gid, fsid, nodeid, dev
_SUBJECT = struct.Struct(">IIIIIIII")  # auid, euid, egid, ruid, rgid, pid, sid, port
_U32 = struct.Struct(">I")
_TRAILER = struct.Struct(">HI")
_TERMINALS: dict[tuple[bytes, int], bytes] = {}

#: The fields of an entry, in journal.frame_parts()'s order but the first
#: (the sequence number, given when it is filed): time_ns, kind, mode, uid,
#: gid, auid, asid, fid, start, end, size, path, path2, terminal, event, data.
Fields = tuple[
    int, int, int, int, int, int, int, int, int, int, int,
    bytes, bytes, bytes, bytes, "bytes | memoryview",
]  # fmt: skip


def _terminal_bytes(addr: bytes, port: int) -> bytes:
    """_terminal() of a subject's address bytes (4 or 16) and port, encoded."""
    key = (addr, port)
    got = _TERMINALS.get(key)
    if got is None:
        if port == 0 and not any(addr):
            got = b""
        else:
            text = (
                socket.inet_ntoa(addr)
                if len(addr) == 4
                else socket.inet_ntop(socket.AF_INET6, addr)
            )
            got = (f"{text} port {port}" if port else text).encode()
        if len(_TERMINALS) > 1024:
            _TERMINALS.clear()
        _TERMINALS[key] = got
    return got


def _path_ok(p: bytes) -> bool:
    return 0 < len(p) <= journal.PATH_MAX and b"\0" not in p


def parse_fast(buf: bytes, o: int, n: int, view: memoryview | None = None) -> Fields | None:
    """The fields of the journal record @buf[@o:@o + @n] (a whole record:
    its header says @n bytes), for the layout the module writes; None for
    anything else (the general decoder decides then).  @view, a memoryview
    of @buf, lets a write's data be filed without a copy."""
    end = o + n
    if n < 18 or buf[o] != 0x14:
        return None
    _tid, size, _version, event, _modifier, sec, msec = _HEADER32.unpack_from(buf, o)
    kind = KIND_OF.get(event)
    if kind is None or size != n:
        return None
    a1 = a2 = a3 = -1
    paths: list[bytes] = []
    attr: tuple[int, ...] | None = None
    data: bytes | memoryview | None = None
    text: bytes | None = None
    subj: tuple[int, ...] | None = None
    addr = b""
    p = o + 18
    while p < end:
        tid = buf[p]
        if tid == 0x71:  # arg64
            if p + 12 > end:
                return None
            num, value, tl = _ARG64.unpack_from(buf, p + 1)
            p += 12 + tl
            if num == 1:
                a1 = value
            elif num == 2:
                a2 = value
            elif num == 3:
                a3 = value
        elif tid == 0x23 or tid == 0x28:  # path, text
            if p + 3 > end:
                return None
            tl = buf[p + 1] << 8 | buf[p + 2]
            q = p + 3
            p = q + tl
            if p > end:
                return None
            s = buf[q : p - 1 if tl and buf[p - 1] == 0 else p]
            if tid == 0x23:
                paths.append(s)
            elif text is None:
                text = s
        elif tid == 0x3E:  # attr32
            if p + 29 > end:
                return None
            if attr is None:
                attr = _ATTR32.unpack_from(buf, p + 1)
            p += 29
        elif tid == 0x29:  # opaque
            if p + 3 > end:
                return None
            dl = buf[p + 1] << 8 | buf[p + 2]
            q = p + 3
            p = q + dl
            if p > end:
                return None
            if data is None:
                data = view[q:p] if view is not None else buf[q:p]
        elif tid == 0x24 or tid == 0x7A:  # subject32, subject32_ex
            if p + 33 > end:
                return None
            ids = _SUBJECT.unpack_from(buf, p + 1)
            p += 33
            if tid == 0x7A:
                if p + 4 > end:
                    return None
                (atype,) = _U32.unpack_from(buf, p)
                p += 4
                if atype != 4 and atype != 16:
                    return None
            else:
                atype = 4
            if p + atype > end:
                return None
            if subj is None:
                subj, addr = ids, buf[p : p + atype]
            p += atype
        elif tid == 0x27:  # return32
            p += 6
        elif tid == 0x2F:  # seq
            p += 5
        elif tid == 0x13:  # trailer: the last token, and it agrees with the header
            if p + 7 != end:
                return None
            magic, count = _TRAILER.unpack_from(buf, p + 1)
            if magic != TRAILER_MAGIC or count != size:
                return None
            p = end
        else:
            return None
    if p != end or a3 < 0 or attr is None:
        return None
    start = stop = 0
    if kind == Kind.WRITE or kind == Kind.LOST:
        if a1 < 0 or a2 < a1:
            return None
        start, stop = a1, a2
    two = kind == Kind.RENAME or kind == Kind.LINK
    if len(paths) != (2 if two else 1) or not all(_path_ok(x) for x in paths):
        return None
    if kind == Kind.WRITE:
        if data is None or len(data) != stop - start or a3 < stop:
            return None
    else:
        data = b""
    if text is None:
        text = b""
    elif not text.isascii():
        try:
            text.decode()
        except UnicodeDecodeError:
            return None
    if subj is None:
        auid = asid = AUDIT_UNSET
        term = b""
    else:
        auid, asid = subj[0], subj[6]
        term = _terminal_bytes(addr, subj[7])
    mode, uid, gid, fsid, nodeid, _dev = attr
    return (
        sec * 1_000_000_000 + msec * 1_000_000,
        int(kind),
        stat.S_IFREG | (mode & 0o7777),
        uid,
        gid,
        auid,
        asid,
        file_id(fsid, nodeid),
        start,
        stop,
        a3,
        paths[0],
        paths[1] if two else b"",
        term,
        text,
        data,
    )


def fields_of(e: Entry) -> Fields:
    """An entry's fields as parse_fast() gives them."""
    return (
        e.time_ns, int(e.kind), e.mode, e.uid, e.gid, e.auid, e.asid, e.fid, e.start, e.end,
        e.size, e.path, e.path2, e.terminal.encode(), e.event.encode(), e.data,
    )  # fmt: skip


class Filer:
    """Journal records of a batch become entries, appended at the batch's
    end with one fsync.  Sequence numbers go on from the journal's last,
    so the journal's order is the ring's, across restarts.  Past
    @max_bytes (0: no limit) file data is no longer filed: each such
    change is filed as a LOST entry of the file (a few dozen bytes), so
    that restores say the file cannot be restored exactly past it."""

    def __init__(self, store: Store, max_bytes: int, log: Callable[[str], None]) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.log = log
        self.seq = store.last_seq()
        self.size = store.disk_bytes()
        # The batch's entries, encoded: frames' pieces to join (journal.frame_parts).
        self.pending: list[bytes | memoryview] = []
        self.pending_first = 0  # the first pending entry's sequence number
        self.pending_entries = 0
        self.pending_data = 0  # file data bytes they file
        self.pending_lost = 0  # LOST entries among them
        self.pending_bytes = 0
        self.full = False
        self.counters = {
            "filed": 0,  # entries in the journal
            "filed_data_bytes": 0,
            "lost": 0,  # LOST entries filed (changes the module could not capture)
            "over_max": 0,  # changes whose data was not filed (protect-max)
            "malformed": 0,  # journal records that could not be filed
            "errors": 0,  # entries a failed append lost
        }
        self.last_error = ""

    def scan(self, data: bytes, trail: str, offset: int) -> None:
        """Pick out the journal records of a batch (whole records, as
        written to @trail at @offset)."""
        if not _EVENT_BYTES.search(data):
            return  # the common case: no journal record in the batch
        view = memoryview(data)
        kinds = KIND_OF
        o = 0
        size = len(data)
        while o < size:
            n = int.from_bytes(data[o + 1 : o + 5], "big")
            if data[o] not in HEADER_IDS or n < 8 or o + n > size:
                self._bad(trail, offset + o, "not a BSM record here; the rest of the batch skipped")
                return
            if (data[o + 6] << 8 | data[o + 7]) in kinds:
                f = parse_fast(data, o, n, view)
                if f is None:
                    self._one(data[o : o + n], trail, offset + o)
                else:
                    self._file(f)
            o += n

    def _bad(self, trail: str, offset: int, why: str) -> None:
        self.counters["malformed"] += 1
        self.last_error = f"{trail}: offset {offset}: journal record not filed: {why}"
        self.log(self.last_error)

    def _one(self, raw: bytes, trail: str, offset: int) -> None:
        """A record the fast path did not take: the general decoder's way."""
        try:
            rec = next(iter(decode_records(raw, source=trail)))
            e = entry_of(rec, self.seq + 1)
        except BSMDecodeError as err:
            self._bad(trail, offset + err.offset, err.reason)
            return
        except (RecordError, StopIteration) as err:
            self._bad(trail, offset, str(err) or "no record")
            return
        self._file(fields_of(e))

    def _file(self, f: Fields) -> None:
        data = f[15]
        kind = f[1]
        if kind == Kind.WRITE and self.max_bytes:
            if self.size + self.pending_bytes + len(data) > self.max_bytes:
                if not self.full:
                    self.full = True
                    self.last_error = (
                        f"the journal {self.store.root} holds {self.size} bytes, protect-max is "
                        f"{self.max_bytes}: changes are filed as lost, without their data, "
                        "until it is compacted (lxbsm-recover compact) and the daemon reloaded"
                    )
                    self.log(self.last_error)
                self.counters["over_max"] += 1
                event = f"{OVER_MAX} ({f[14].decode()})".encode()
                f = (*f[:1], int(Kind.LOST), *f[2:14], event, b"")
                data, kind = b"", Kind.LOST
        self.seq += 1
        if not self.pending_entries:
            self.pending_first = self.seq
        self.pending.extend(journal.frame_parts(self.seq, *f))
        self.pending_entries += 1
        self.pending_data += len(data)
        if kind == Kind.LOST:
            self.pending_lost += 1
        self.pending_bytes += len(data) + 128

    def flush(self) -> None:
        """The batch's entries to the journal, on disk (one fsync)."""
        if not self.pending_entries:
            return
        n, first, nbytes, lost = (
            self.pending_entries,
            self.pending_first,
            self.pending_data,
            self.pending_lost,
        )
        data = b"".join(self.pending)
        self.pending = []
        self.pending_entries = self.pending_data = self.pending_lost = self.pending_bytes = 0
        try:
            self.size += self.store.append_frames(data, first)
        except (OSError, StoreError) as err:
            self.counters["errors"] += n
            why = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) else str(err)
            self.last_error = f"journal {self.store.root}: {n} entries not filed: {why}"
            self.log(self.last_error + " (they are in the trail)")
            return
        self.counters["filed"] += n
        self.counters["filed_data_bytes"] += nbytes
        self.counters["lost"] += lost

    def remeasure(self, max_bytes: int) -> None:
        """A reload: the limit may have changed and a compaction freed room."""
        self.max_bytes = max_bytes
        self.size = self.store.disk_bytes()
        if self.full and (not max_bytes or self.size < max_bytes):
            self.full = False
            self.log(f"the journal {self.store.root} has room again: file data is filed")


# -- the helper ---------------------------------------------------------------


def _send(sock: socket.socket, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    body = json.dumps(msg).encode()
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sock.sendmsg([body], anc)
    else:
        sock.send(body)


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors it carries; (None, []) at the end."""
    fds = array.array("i")
    data, anc, _flags, _addr = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(uapi.PROTECT_MAX * fds.itemsize)
    )
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    msg = json.loads(data)
    return (msg if isinstance(msg, dict) else None), list(fds)


def open_tree(tree: str) -> int:
    """@tree, a directory named by its own path, as an O_PATH descriptor;
    OSError (with a reason a person can act on) if it is not one."""
    fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(tree)
    if real != tree:
        os.close(fd)
        raise OSError(
            errno.ELOOP,
            f"it is reached through a symbolic link (it is {real}); changes are named by the "
            "real path: protect that",
        )
    return fd


def _open_trees(trees: list[str]) -> tuple[dict[str, Any], list[int]]:
    fds: list[int] = []
    for i, tree in enumerate(trees):
        try:
            fds.append(open_tree(tree))
        except OSError as e:
            for fd in fds:
                os.close(fd)
            why = e.strerror or str(e)
            if e.errno == errno.ENOTDIR:
                why = "not a directory (or a symbolic link to one: give the real path)"
            return {"op": "open", "ok": False, "index": i, "error": why}, []
    return {"op": "open", "ok": True}, fds


def _baseline(store: Store, req: dict[str, Any]) -> dict[str, Any]:
    began = time.monotonic()
    reply: dict[str, Any] = {"op": "baseline", "time_ns": req["time_ns"]}
    try:
        got = store.baseline([os.fsencode(t) for t in req["trees"]], int(req["time_ns"]))
    except (OSError, StoreError, journal.JournalError) as e:
        why = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(e)
        reply.update(ok=False, error=why)
        return reply
    reply.update(
        ok=True,
        path=str(got.baseline.path),
        files=got.files,
        added=got.added,
        skipped=[[os.fsdecode(p), why] for p, why in got.skipped[:SKIPPED_SHOWN]],
        nskipped=len(got.skipped),
        seconds=round(time.monotonic() - began, 3),
    )
    return reply


def helper_main(sock: socket.socket, root: str) -> None:
    """The helper's loop: open trees at once, baselines in a thread."""
    store = Store(Path(root))
    work: queue.Queue[dict[str, Any] | None] = queue.Queue()
    lock = threading.Lock()

    def worker() -> None:
        while (req := work.get()) is not None:
            try:
                reply = _baseline(store, req)
            except Exception as e:  # a fault of ours: say so, keep serving
                reply = {"op": "baseline", "ok": False, "error": f"{type(e).__name__}: {e}"}
            with lock:
                try:
                    _send(sock, reply)
                except OSError:
                    return

    threading.Thread(target=worker, daemon=True).start()
    while True:
        try:
            req, fds = _recv(sock)
        except (OSError, ValueError):
            return
        for fd in fds:
            os.close(fd)
        if req is None:
            return  # the daemon is gone
        if req.get("op") == "open":
            reply, out = _open_trees([str(t) for t in req.get("trees", [])])
            with lock:
                _send(sock, reply, out)
            for fd in out:
                os.close(fd)
        elif req.get("op") == "baseline":
            work.put(req)


def start_helper(
    root: str,
    drop: Callable[[], object] | None = None,
    seccomp: Callable[[], object] | None = None,
) -> tuple[int, socket.socket]:
    """Fork the helper for the journal directory @root: (pid, the daemon's
    end of the socket pair).  In the child, @drop lowers its privileges
    and @seccomp confines it; every descriptor but the pair's end and
    stdio is closed first (the ring, the control socket)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        theirs.close()
        mine.set_inheritable(False)
        return pid, mine
    code = 1
    try:
        mine.close()
        keep = theirs.fileno()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 16)
        if drop is not None:
            drop()
        if seccomp is not None:
            seccomp()
        helper_main(theirs, root)
        code = 0
    except BaseException as e:  # never back into the daemon's code
        try:
            os.write(2, f"lxbsm-auditd: baseline helper: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def prepare_journal(path: str, uid: int, gid: int) -> None:
    """The journal directory and its subdirectories, mode 0700 and owned by
    the daemon's user (@uid, @gid; -1: whoever runs this), made as root
    before the daemon drops its privileges; what an earlier run left there
    (a compaction run as root, say) is given to that user too.  A symbolic
    link in its place is refused, not followed."""
    os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
    store = Store(Path(path))
    for d in (store.root, store.objects, store.baselines_dir, store.journal_dir):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if uid >= 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    # The compaction lock (Store.locked()), made here so that it is the daemon user's too.
    store.make_lock_file()
    if uid < 0:
        return
    for top, dirs, names in os.walk(store.root):
        for n in dirs + names:
            p = os.path.join(top, n)
            st = os.lstat(p)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(p, uid, gid)


class ProtectRing(Protocol):
    def set_protect(self, fds: list[int]) -> None: ...

    def protect_status(self) -> uapi.ProtectStatus: ...


class Protection:
    """The trees in force, the helper, the journal and its filing."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.trees: tuple[str, ...] = ()
        self.where: tuple[str, ...] = ()
        self.journal = ""
        self.store: Store | None = None
        self.filer: Filer | None = None
        self.helper: socket.socket | None = None
        self.helper_pid = 0
        self.baseline: dict[str, Any] = {"state": "none"}
        self.baselines_queued = 0
        self.unfiled = 0  # journal records seen while protection is off

    def attach_helper(self, pid: int, sock: socket.socket) -> None:
        self.helper_pid, self.helper = pid, sock

    def _helper_gone(self) -> None:
        if self.helper is not None:
            self.helper.close()
        self.helper = None
        self.log("the baseline helper has exited: new protected trees need a restart")
        if self.baselines_queued:
            self.baseline = {"state": "failed", "error": "the baseline helper exited"}
            self.baselines_queued = 0

    def _open(self, ac: cfgmod.AuditControl) -> list[int]:
        assert self.helper is not None
        try:
            _send(self.helper, {"op": "open", "trees": list(ac.protect)})
            while True:
                self.helper.settimeout(30.0)
                try:
                    msg, fds = _recv(self.helper)
                finally:
                    self.helper.settimeout(None)
                if msg is None:
                    raise OSError(errno.EPIPE, "the baseline helper has exited")
                if msg.get("op") == "open":
                    break
                self._handle(msg)  # a baseline finished meanwhile
        except (OSError, ValueError) as e:
            if isinstance(e, OSError) and e.errno == errno.EPIPE:
                self._helper_gone()
            raise cfgmod.ConfigError(
                f"{ac.protect_where[0]}: protect: cannot open the trees: {e}"
            ) from None
        if not msg.get("ok"):
            i = int(msg.get("index", 0))
            raise cfgmod.ConfigError(
                f"{ac.protect_where[i]}: protect: {ac.protect[i]}: {msg.get('error')}"
            )
        if len(fds) != len(ac.protect):
            for fd in fds:
                os.close(fd)
            raise cfgmod.ConfigError(
                f"{ac.protect_where[0]}: protect: the helper gave {len(fds)} descriptors "
                f"for {len(ac.protect)} trees"
            )
        return fds

    def apply(self, ac: cfgmod.AuditControl, ring: ProtectRing) -> None:
        """Put @ac's trees in force (at start and on every reload); a
        baseline of every tree in force when one comes in.  ConfigError
        (naming the file and line) leaves the trees in force as they were."""
        new = ac.protect
        if new and self.helper is None:
            raise cfgmod.ConfigError(
                f"{ac.protect_where[0]}: protect: needs lxbsm-auditd restarted (it started "
                "without protected trees, or its baseline helper has exited, and only a daemon "
                "starting as root can begin one)"
            )
        if new and self.store is not None and ac.protect_journal != self.journal:
            raise cfgmod.ConfigError(
                f"{ac.source}: protect-journal:{ac.protect_journal} is not the journal in use "
                f"({self.journal}): a new journal directory needs lxbsm-auditd restarted"
            )
        store: Store | None
        filer: Filer | None
        if new and self.store is None:
            store = Store(Path(ac.protect_journal))
            try:
                store.create()
                filer = Filer(store, ac.protect_max, self.log)
            except (OSError, StoreError) as e:
                why = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) else str(e)
                raise cfgmod.ConfigError(
                    f"{ac.source}: protect-journal: cannot use {ac.protect_journal}: {why}"
                ) from None
        else:
            store, filer = self.store, self.filer
        fds = self._open(ac) if new else []
        try:
            ring.set_protect(fds)
        except (OSError, ValueError) as e:
            why = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
            where = ac.protect_where[0] if new else ac.source
            raise cfgmod.ConfigError(
                f"{where}: the module refused the protected trees: {why}"
            ) from None
        finally:
            for fd in fds:
                os.close(fd)
        added = [t for t in new if t not in self.trees]
        if filer is not None and filer is self.filer:
            filer.remeasure(ac.protect_max)
        self.store, self.filer = store, filer
        self.journal = str(store.root) if store is not None else ""
        self.trees, self.where = new, ac.protect_where
        if self.trees and added:
            self.request_baseline()
        if new or added:
            self.log(f"protected trees in force: {', '.join(new) or 'none'}")

    def request_baseline(self) -> None:
        """A baseline of every tree in force, taken by the helper from now on.
        Its time is now, to the millisecond below, which is how records are
        stamped: every change whose record is stamped from then on is
        replayed on top of it (docs/recovery.md)."""
        assert self.helper is not None
        t0 = time.time_ns() // 1_000_000 * 1_000_000
        try:
            _send(self.helper, {"op": "baseline", "trees": list(self.trees), "time_ns": t0})
        except OSError as e:
            self.baseline = {"state": "failed", "error": f"cannot ask the helper: {e.strerror}"}
            self.log(f"baseline not taken: {self.baseline['error']}")
            return
        self.baselines_queued += 1
        self.baseline = {"state": "running", "time_ns": t0, "trees": list(self.trees)}
        self.log(f"baseline of {', '.join(self.trees)} begun")

    def fileno(self) -> int:
        return self.helper.fileno() if self.helper is not None else -1

    def readable(self) -> None:
        """The helper said something (a baseline is done) or exited."""
        assert self.helper is not None
        try:
            self.helper.setblocking(False)
            try:
                msg, fds = _recv(self.helper)
            finally:
                self.helper.setblocking(True)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            msg, fds = None, []
        for fd in fds:
            os.close(fd)
        if msg is None:
            self._helper_gone()
            return
        self._handle(msg)

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg.get("op") != "baseline":
            return
        self.baselines_queued = max(0, self.baselines_queued - 1)
        if not msg.get("ok"):
            self.baseline = {"state": "failed", **msg}
            self.log(f"baseline failed: {msg.get('error')}")
            return
        self.baseline = {"state": "done", **msg}
        if self.filer is not None:
            self.filer.size += int(msg.get("added", 0))
        self.log(
            f"baseline {msg.get('path')}: {msg.get('files')} files in "
            f"{msg.get('seconds')} s, {msg.get('added')} bytes added"
        )
        if msg.get("nskipped"):
            names = ", ".join(f"{p} ({why})" for p, why in msg.get("skipped", []))
            self.log(
                f"baseline {msg.get('path')}: {msg.get('nskipped')} files or directories "
                f"could not be read, so cannot be restored to before their next change: {names}"
            )

    # -- filing ------------------------------------------------------------------

    def scan(self, data: bytes, trail: str, offset: int) -> None:
        if self.filer is not None and self.trees:
            self.filer.scan(data, trail, offset)
        elif _EVENT_BYTES.search(data):
            # Records of trees no longer protected, still in the ring: the trail has them.
            self.unfiled += sum(
                1 for r in decode_records(data, source=trail, skip_bad=True) if r.event in KIND_OF
            )

    def flush(self) -> None:
        if self.filer is not None:
            self.filer.flush()

    def status(self, ring: ProtectRing) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trees": list(self.trees),
            "journal": self.journal or None,
            "helper_pid": self.helper_pid if self.helper is not None else None,
            "baseline": self.baseline,
            "unfiled": self.unfiled,
        }
        if self.filer is not None:
            f = self.filer
            out.update(f.counters)
            out.update(
                journal_bytes=f.size,
                protect_max=f.max_bytes,
                full=f.full,
                last_error=f.last_error,
            )
        try:
            k = ring.protect_status()
            out["kernel"] = {
                "trees": k.nr_trees,
                "records": k.records,
                "bytes": k.bytes,
                "lost": k.lost,
            }
        except OSError as e:
            out["kernel"] = {"error": e.strerror or str(e)}
        return out
