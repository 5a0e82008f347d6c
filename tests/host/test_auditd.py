"""lxbsm-auditd's trail writer, recovery, feeds and control, over a fake ring.

The fake ring has the interface of auditd.source.BatchRing (batch, commit,
submit...) with positions counted in records; everything else is the real
daemon code.  The guest suite runs the same daemon against /dev/lxbsm.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools import audit, uapi
from lxbsm_tools.auditd import config, daemon, trail
from lxbsm_tools.auditd.feeds import Feed
from lxbsm_tools.bsm import Record, Token, encode_record, make_token, read_trail

STARTUP, SHUTDOWN, RECOVERY = 45000, 45001, 45029


class FakeRing:
    size = 1 << 20  # positions count records here

    def __init__(self) -> None:
        self.recs: list[bytes] = []
        self.cons = 0
        self.r, self.w = os.pipe2(os.O_NONBLOCK)
        self.fd = self.r
        self.pushed: list[uapi.KernelConfig] = []
        self.pushed_rules: list[uapi.ExecRules | None] = []

    @property
    def consumer_pos(self) -> int:
        return self.cons

    def add(self, rec: bytes) -> None:
        self.recs.append(rec)
        os.write(self.w, b"x")

    def batch(self, max_bytes: int) -> tuple[list[memoryview], int]:
        out: list[memoryview] = []
        pos, total = self.cons, 0
        while pos < len(self.recs):
            if out and total + len(self.recs[pos]) > max_bytes:
                break
            out.append(memoryview(self.recs[pos]))
            total += len(self.recs[pos])
            pos += 1
        return out, pos

    def copy_batch(self, max_bytes: int) -> tuple[bytes, int, int]:
        views, end = self.batch(max_bytes)
        return b"".join(views), len(views), end

    def commit(self, pos: int) -> None:
        self.cons = pos
        if not self.pending():
            try:
                os.read(self.r, 65536)
            except BlockingIOError:
                pass

    def pending(self) -> bool:
        return self.cons < len(self.recs)

    def wait(self, timeout: float | None = None) -> bool:
        return self.pending()

    def submit(self, record: bytes) -> None:
        self.add(record)

    def push(self, cfg: uapi.KernelConfig, exec_rules: uapi.ExecRules | None = None) -> None:
        self.pushed.append(cfg)
        self.pushed_rules.append(exec_rules)

    protect_refuse: OSError | None = None

    def set_protect(self, fds: list[int]) -> None:
        """What the module would hold: the directories the descriptors name."""
        if self.protect_refuse is not None:
            raise self.protect_refuse
        self.protected = [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]

    def protect_status(self) -> uapi.ProtectStatus:
        return uapi.ProtectStatus(len(getattr(self, "protected", [])), 0, 0, 0)


def rec(n: int, size: int = 0) -> bytes:
    toks = [make_token("text", text=f"mark {n}" + "x" * size)]
    toks.append(make_token("return32", status=0, value=n))
    return encode_record(6153, 0, toks, time=(1_700_000_000 + n, n % 1000))


def write_control(
    tmp_path: Path, extra: str = "", dirs: tuple[str, ...] = ("trails",), policy: str = "cnt,argv"
) -> Path:
    lines = [f"dir:{tmp_path / d}" for d in dirs] + ["flags:lo", f"policy:{policy}", extra]
    for d in dirs:
        (tmp_path / d).mkdir(exist_ok=True)
    p = tmp_path / "audit_control"
    p.write_text("\n".join(lines) + "\n")
    return p


def make(tmp_path: Path, ring: FakeRing, extra: str = "", **kw: Any) -> daemon.Daemon:
    cf = write_control(tmp_path, extra, **kw)
    logs: list[str] = []
    d = daemon.Daemon(config.load(cf), ring, control_file=str(cf), sock=None, log=logs.append)  # type: ignore[arg-type]
    d.logs = logs  # type: ignore[attr-defined]
    return d


def items(path: str | Path) -> list[Record | Token]:
    return list(read_trail(str(path), include_file_tokens=True))


def fname(tok: Record | Token) -> str:
    """The file name in a file token (``.name`` is the token's own name)."""
    assert isinstance(tok, Token) and tok.name == "file"
    name: str = tok.as_dict()["name"]
    return name


def marks(path: str | Path) -> list[int]:
    out = []
    for it in read_trail(str(path)):
        t = it.first("text")
        if t is not None and t.text.startswith("mark "):
            out.append(int(t.text.split()[1].rstrip("x")))
    return out


def trails(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if trail.TRAIL_RE.fullmatch(p.name))


def test_a_session_writes_openbsm_named_trails_with_file_tokens(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring)
    d.start([])
    cur = tmp_path / "trails" / "current"
    first = Path(os.readlink(cur))
    assert re.fullmatch(r"\d{14}\.not_terminated", first.name)
    for n in range(3):
        ring.add(rec(n))
    d.drain()
    d.command("rotate")
    second = Path(os.readlink(cur))
    for n in range(3, 5):
        ring.add(rec(n))
    d.drain()
    d.shutdown()
    assert not cur.exists() and not cur.is_symlink()
    a, b = trails(tmp_path / "trails")
    assert re.fullmatch(r"(\d{14})\.(\d{14})", a.name) and a.name.startswith(first.name[:14])
    assert b.name.startswith(second.name[:14])
    ia, ib = items(a), items(b)
    # file token (no previous trail), startup, 3 records, file token naming the next trail
    assert (fname(ia[0]), fname(ia[-1])) == ("", str(second))
    assert [r.event for r in ia[1:-1]] == [STARTUP, 6153, 6153, 6153]
    assert ia[1].first("text").text == "lxbsm-auditd::Audit startup"  # type: ignore[union-attr]
    assert (fname(ib[0]), fname(ib[-1])) == (str(a), "")
    assert [r.event for r in ib[1:-1]] == [6153, 6153, SHUTDOWN]
    assert marks(a) + marks(b) == list(range(5))
    assert oct(a.stat().st_mode & 0o777) == "0o640"
    assert d.counters["records"] == 7 and d.counters["rotations"] == 1


def test_the_host_key_suffixes_names_and_rapid_rotations_stay_unique(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, "host:box")
    d.start([])
    assert d.trail.path is not None and d.trail.path.name.endswith(".not_terminated.box")
    for _ in range(4):
        d.command("rotate")
    d.shutdown()
    names = [p.name for p in trails(tmp_path / "trails")]
    assert len(names) == 5 and all(re.fullmatch(r"\d{14}\.\d{14}\.box", n) for n in names)
    starts = [n[:14] for n in names]
    assert starts == sorted(set(starts))


def test_filesz_rotates(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, "filesz:512K")
    d.start([])
    for n in range(40):
        ring.add(rec(n, 30000))
    d.drain()
    d.shutdown()
    ts = trails(tmp_path / "trails")
    assert len(ts) >= 2
    assert all(p.stat().st_size < 512 * 1024 + 300 * 1024 for p in ts)
    assert [m for p in ts for m in marks(p)] == list(range(40))


def test_crash_recovery_renames_and_records_it(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring)
    d.start([])
    ring.add(rec(1))
    d.drain()
    left = d.trail.path
    assert left is not None
    os.close(d.trail.fd)  # the daemon dies here
    d2 = make(tmp_path, ring)
    recovered = d2.recover()
    assert recovered == [str(left.with_name(left.name[:14] + ".crash_recovery"))]
    d2.start(recovered)
    d2.drain()
    d2.shutdown()
    got = [r for p in trails(tmp_path / "trails") for r in read_trail(str(p))]
    rec_rec = [r for r in got if r.event == RECOVERY]
    assert len(rec_rec) == 1 and rec_rec[0].first("path").text == recovered[0]
    assert [r.event for r in got].count(STARTUP) == 2


def test_a_batch_written_but_not_committed_is_not_written_twice(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring)
    d.start([])
    d.drain()
    for n in range(5):
        ring.add(rec(n))
    start = ring.consumer_pos
    views, end = ring.batch(1 << 20)
    data = b"".join(views)
    d.trail.write(data, len(views), start, end)  # killed before the commit
    os.close(d.trail.fd)
    d2 = make(tmp_path, ring)
    d2.start(d2.recover())
    d2.drain()
    d2.shutdown()
    assert d2.counters["skipped_after_crash"] == 5
    assert sorted(m for p in trails(tmp_path / "trails") for m in marks(p)) == list(range(5))


def test_a_torn_batch_is_cut_and_written_again(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring)
    d.start([])
    d.drain()
    for n in range(5):
        ring.add(rec(n))
    start = ring.consumer_pos
    views, end = ring.batch(1 << 20)
    data = b"".join(views)
    t = d.trail
    os.pwrite(t.jfd, trail.Journal(t.path.name, t.size, t.size + len(data), start, end).pack(), 0)  # type: ignore[union-attr]
    os.write(t.fd, data[: len(data) // 2])  # killed in the middle of the write
    os.close(t.fd)
    d2 = make(tmp_path, ring)
    d2.start(d2.recover())
    d2.drain()
    d2.shutdown()
    for p in trails(tmp_path / "trails"):
        items(p)  # every trail decodes whole: nothing torn is left
    assert sorted(m for p in trails(tmp_path / "trails") for m in marks(p)) == list(range(5))


@pytest.mark.parametrize("policy", ["cnt", "argv"])
def test_disk_full_never_leaves_a_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, policy=policy)
    d.start([])
    d.drain()
    before = d.trail.size
    real_write = os.write

    def short_then_full(fd: int, data: Any) -> int:
        if fd == d.trail.fd:
            if len(data) > 10:
                return real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    for n in range(3):
        ring.add(rec(n))
    d.drain()
    monkeypatch.undo()
    assert d.trail.size == before == os.fstat(d.trail.fd).st_size
    assert d.counters["disk_full_events"] >= 1
    if policy == "cnt":
        assert d.counters["disk_full_dropped"] == 3 and not ring.pending()
    else:
        assert d.counters["disk_full_dropped"] == 0 and ring.pending()
        d.blocked_until = 0.0
        d.drain()  # space is back: the records were waiting in the ring
        assert not ring.pending()
    d.shutdown()
    got = [m for p in trails(tmp_path / "trails") for m in marks(p)]
    assert got == ([] if policy == "cnt" else [0, 1, 2])


def test_minfree_moves_to_the_next_dir_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, "minfree:10", dirs=("a", "b"))
    warned: list[tuple[str, str]] = []
    d.trail.warn = lambda k, a: warned.append((k, a))
    d.start([])
    assert d.trail.path is not None and d.trail.path.parent == tmp_path / "a"
    monkeypatch.setattr(trail, "free_percent", lambda p: 5.0 if p.endswith("/a") else 50.0)
    assert d.trail.space_low()
    d.rotate("minfree")
    assert d.trail.path.parent == tmp_path / "b"
    assert warned == [("soft", str(tmp_path / "a"))]
    assert os.readlink(tmp_path / "a" / "current") == str(d.trail.path)
    d.shutdown()


def test_expiry_removes_the_oldest_closed_trails(tmp_path: Path) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, "expire-after:3K")
    tdir = tmp_path / "trails"
    now = time.time()
    closed = []
    for age in (5, 4, 3, 2):  # days
        start = trail.stamp(now - age * 86400 - 60)
        closed.append(tdir / f"{start}.{trail.stamp(now - age * 86400)}")
        closed[-1].write_bytes(b"x" * 1024)
    open_one = tdir / f"{trail.stamp(now)}.not_terminated"
    open_one.write_bytes(b"x" * 1024)
    # 5 KiB on disk, limit 3 KiB: the two oldest closed trails go, the open one stays.
    assert d.expire() == [str(p) for p in closed[:2]]
    assert trails(tdir) == [*closed[2:], open_one]
    d2 = make(tmp_path, ring, "expire-after:3d")
    assert d2.expire() == [str(closed[2])]


class Reader(threading.Thread):
    def __init__(self, path: str, read: bool = True) -> None:
        super().__init__(daemon=True)
        self.path, self.read, self.data = path, read, b""
        self.opened = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        self.opened.set()
        while not self.stop.is_set():
            if not self.read:
                time.sleep(0.01)
                continue
            if select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.data += chunk
        os.close(fd)


def test_feeds_deliver_whole_records_and_a_stalled_reader_only_loses_its_own(
    tmp_path: Path,
) -> None:
    ring = FakeRing()
    fast, stalled, js = (str(tmp_path / n) for n in ("fast", "stalled", "json"))
    d = make(tmp_path, ring, f"realtime:{fast}\nrealtime:{stalled}\nrealtime:{js},json")
    for f in d.feeds:
        f.create()
    readers = [Reader(fast), Reader(stalled, read=False), Reader(js)]
    for r in readers:
        r.start()
    d.start([])
    deadline = time.monotonic() + 5
    while not all(f.try_attach() for f in d.feeds) and time.monotonic() < deadline:
        time.sleep(0.01)
    n = 2000  # 2 MB: more than a queue (1 MiB) and a pipe (64 KiB) hold
    for i in range(n):
        ring.add(rec(i, 1000))
        if i % 50 == 49:  # a producer the fast readers keep up with
            while ring.pending() or any(f.queue for f in d.feeds if f.path != stalled):
                d.drain()
                for f in d.feeds:
                    f.flush()
                time.sleep(0.002)
    time.sleep(0.3)
    for r in readers:
        r.stop.set()
        r.join(5)
    by = {f.path: f for f in d.feeds}
    assert by[stalled].dropped > 0 and by[fast].dropped == 0 and by[js].dropped == 0
    fast_marks = [int(m) for m in re.findall(rb"mark (\d+)", readers[0].data)]
    assert fast_marks == list(range(n))
    lines = [json.loads(line) for line in readers[2].data.decode().splitlines()]
    assert [x["event"] for x in lines][:1] == [STARTUP] and len(lines) == n + 1
    assert d.counters["records"] == n + 1  # the trail got everything too
    d.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[daemon.Daemon, str]]:
    ring = FakeRing()
    d = make(tmp_path, ring)
    path = str(tmp_path / "ctl.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    s.setblocking(False)
    d.sock = s
    d.start([])
    wr, ww = os.pipe()
    t = threading.Thread(target=d.run, args=(wr,), daemon=True)
    t.start()
    yield d, path
    d.stopping = True
    os.write(ww, b"\0")
    t.join(10)
    assert not t.is_alive()


def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("wait_ms", [0, 1000])
def test_records_that_come_during_batch_wait_come_in_one_batch(
    tmp_path: Path, wait_ms: int
) -> None:
    ring = FakeRing()
    d = make(tmp_path, ring, f"batch-wait:{wait_ms}ms")
    assert d.cfg.control.batch_wait == wait_ms
    d.start([])
    wr, ww = os.pipe()
    t = threading.Thread(target=d.run, args=(wr,), daemon=True)
    t.start()
    try:
        _until(lambda: d.counters["records"] == 1, "the startup record")
        b0 = d.counters["batches"]
        ring.add(rec(1))  # the first after a quiet spell: taken at once in both cases
        _until(lambda: d.counters["records"] == 2, "record 1")
        ring.add(rec(2))
        if wait_ms == 0:
            _until(lambda: d.counters["records"] == 3, "record 2")
        else:
            time.sleep(0.2)
            assert d.counters["records"] == 2  # the daemon rests after a batch
        ring.add(rec(3))
        _until(lambda: d.counters["records"] == 4, "record 3")
        # batch-wait 0: a batch per record; 1000 ms: records 2 and 3 together.
        assert d.counters["batches"] - b0 == (3 if wait_ms == 0 else 2)
    finally:
        d.stopping = True
        os.write(ww, b"\0")
        t.join(10)
    assert not t.is_alive()  # run() shut the trail
    assert marks(trails(tmp_path / "trails")[-1]) == [1, 2, 3]


def test_lxbsm_audit_flags_drive_the_daemon(
    served: tuple[daemon.Daemon, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, sock = served
    assert audit.main(["--socket", sock, "-n"]) == 0
    assert capsys.readouterr().out.startswith(f"new trail: {tmp_path}/trails/")
    assert d.counters["rotations"] == 1
    assert audit.main(["--socket", sock, "-e"]) == 0
    # A broken configuration is refused with file:line; the old one stays in force.
    (tmp_path / "audit_control").write_text(f"dir:{tmp_path}/trails\nflags:lo,zz\n")
    assert audit.main(["--socket", sock, "-s"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/audit_control:2: unknown audit class 'zz'" in err
    assert d.cfg.control.flags == "lo"
    (tmp_path / "audit_control").write_text(f"dir:{tmp_path}/nowhere\nflags:lo\n")
    assert audit.main(["--socket", sock, "-s"]) == 1
    assert f"dir:{tmp_path}/nowhere does not exist" in capsys.readouterr().err
    assert d.cfg.control.dirs == (f"{tmp_path}/trails",)
    (tmp_path / "audit_control").write_text(f"dir:{tmp_path}/trails\nflags:lo,ex\n")
    assert audit.main(["--socket", sock, "-s"]) == 0
    assert d.cfg.control.flags == "lo,ex" and d.counters["rotations"] == 2
    st = audit.daemon_request(sock, "status")["status"]
    rows = dict(audit.daemon_rows(st))
    assert rows["current trail"] == str(d.trail.path)
    assert rows["rotations"] == "2"
    assert audit.main(["--socket", sock, "-t"]) == 0
    deadline = time.monotonic() + 5
    while d.trail.path is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.trail.path is None
    names = [p.name for p in trails(tmp_path / "trails")]
    assert len(names) == 3 and not any("not_terminated" in n for n in names)


def test_lxbsm_audit_without_a_daemon_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit.main(["--socket", str(tmp_path / "none.sock"), "-n"]) == 1
    assert capsys.readouterr().err == (
        f"lxbsm-audit: lxbsm-auditd is not running (no listener on {tmp_path}/none.sock)\n"
    )


def test_a_feed_path_that_is_not_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(OSError, match="not a FIFO"):
        Feed(str(tmp_path / "plain")).create()


SECCOMP_RUN = """
import os, socket, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_auditd import FakeRing, rec
from lxbsm_tools.auditd import config, daemon, privs
tmp = Path({tmp!r})
cf = tmp / "audit_control"
ring = FakeRing()
d = daemon.Daemon(config.load(cf), ring, control_file=str(cf), sock=None, log=daemon.stderr_log)
for f in d.feeds:
    f.create()
readers = [os.open(f.path, os.O_RDONLY | os.O_NONBLOCK) for f in d.feeds]
for x in d.listeners:
    x.create()
client = socket.socket(socket.AF_UNIX)
client.connect(d.listeners[0].path)
wake = daemon.set_signals()
privs.install_seccomp()
d.feeds.append(d.listeners[0].accept())
d.start(d.recover())
for i in range(700):
    ring.add(rec(i, 1000))
d.drain()
for f in d.feeds:
    f.try_attach()
for i in range(10):
    ring.add(rec(i, 10))
for c in ("rotate", "reload", "expire", "status"):
    assert d.command(c)["ok"], c
d.stopping = True
d.run(wake)
print("records", d.counters["records"], flush=True)
print("socket", d.feeds[-1].sent + len(d.feeds[-1].queue), flush=True)
if {forbidden!r}:
    os.setuid(0)
    print("still alive", flush=True)
"""


@pytest.mark.parametrize("forbidden", [False, True])
def test_the_daemon_runs_under_its_seccomp_filter_and_dies_on_anything_else(
    tmp_path: Path, forbidden: bool
) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "audit_control").write_text(
        f"dir:{tmp_path}/t\nflags:lo\nexpire-after:1d\nfilesz:512K\n"
        f"realtime:{tmp_path}/json,json\nrealtime:{tmp_path}/raw\n"
        f"realtime:{tmp_path}/rt.sock,socket\n"
    )
    prog = SECCOMP_RUN.format(
        tests=str(Path(__file__).parent), tmp=str(tmp_path), forbidden=forbidden
    )
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    # startup, 710 records, shutdown (all of them to the socket reader too);
    # three rotations (filesz, -n, -s) on the way
    assert r.stdout.splitlines()[:2] == ["records 712", "socket 712"], r.stderr
    assert len(trails(tmp_path / "t")) == 4
    if forbidden:
        assert r.returncode == -signal.SIGSYS and "still alive" not in r.stdout
    else:
        assert r.returncode == 0, r.stderr


def test_the_warn_hook_gets_audit_warn_arguments(tmp_path: Path) -> None:
    from lxbsm_tools.auditd.main import warn_helper

    out = tmp_path / "out"
    hook = tmp_path / "warn.sh"
    hook.write_text(f'#!/bin/sh\necho "$#:$*" >> {out}\n')
    hook.chmod(0o755)
    pid, w = warn_helper(str(hook), lambda msg: None)
    for line in (b"soft\t/var/audit\n", b"rm -rf\t/\n", b"allsoft\t\n"):
        os.write(w, line)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # Only audit_warn's kinds are run, with the arguments as separate words.
    assert out.read_text() == "2:soft /var/audit\n1:allsoft\n"


def test_a_unix_socket_feed_gives_each_reader_its_own_queue(tmp_path: Path) -> None:
    ring = FakeRing()
    raw, js = str(tmp_path / "rt.sock"), str(tmp_path / "rtj.sock")
    d = make(tmp_path, ring, f"realtime:{raw},socket\nrealtime:{js},json,socket")
    assert [x.path for x in d.listeners] == [raw, js] and d.feeds == []
    for x in d.listeners:
        x.create()
    d.start([])
    d.drain()  # the startup record, before any reader is there
    wr, ww = os.pipe()
    t = threading.Thread(target=d.run, args=(wr,), daemon=True)
    t.start()
    try:
        clients = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        for c, path in zip(clients, (raw, raw, js), strict=True):
            c.connect(path)
            c.settimeout(10)
        deadline = time.monotonic() + 10
        while len([f for f in d.feeds if f.attached]) < 3:
            assert time.monotonic() < deadline, "the daemon did not accept the readers"
            time.sleep(0.01)
        clients[1].close()  # one reader goes away: only its own queue goes with it
        for i in range(5):
            ring.add(rec(i))
        got = [b"", b""]
        while b"mark 4" not in got[0]:
            got[0] += clients[0].recv(65536)
        while got[1].count(b"\n") < 5:
            got[1] += clients[2].recv(65536)
        assert [int(m) for m in re.findall(rb"mark (\d+)", got[0])] == [0, 1, 2, 3, 4]
        events = [json.loads(line)["event"] for line in got[1].splitlines()]
        assert events == [6153] * 5
        deadline = time.monotonic() + 10
        while len(d.feeds) != 2:
            assert time.monotonic() < deadline, "the closed reader was not dropped"
            time.sleep(0.01)
        st = d.status()
        assert [x["connections"] for x in st["listeners"]] == [2, 1]
        assert sorted(f["path"] for f in st["feeds"]) == [f"{raw}#1", f"{js}#1"]
    finally:
        d.stopping = True
        os.write(ww, b"\0")
        t.join(10)


def test_split_records_cuts_a_batch_at_the_header_counts() -> None:
    recs = [rec(1), rec(2, size=300), rec(3)]
    assert daemon.split_records(b"".join(recs)) == recs
    assert daemon.split_records(b"") == []
    with pytest.raises(ValueError, match="offset 0"):
        daemon.split_records(b"\x28" + recs[0][1:])  # not a header token
    with pytest.raises(ValueError, match=f"offset {len(recs[0])}"):
        daemon.split_records(recs[0] + recs[1][:-1])  # the second one cut short
